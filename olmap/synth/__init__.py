"""Synthetic thin sections with ground truth (BSE, EDS, sessions, EPMA, standards).

Entry points: :class:`~olmap.synth.config.SynthConfig` (parameters),
:func:`~olmap.synth.model.build_model` (the grains of a section, from the seed),
:func:`~olmap.synth.render.render_observed` (any window, as the SEM records it) and
:func:`~olmap.synth.section.generate_section` (the files). See ``docs/synthetic-data.md``.
"""

from olmap.synth.config import SynthConfig
from olmap.synth.section import SectionSummary, generate_section

__all__ = ["SectionSummary", "SynthConfig", "generate_section"]
