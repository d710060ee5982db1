"""Figures (matplotlib, Agg backend): previews, histograms, diagnostic plots."""
