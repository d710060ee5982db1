"""Segmentation core: DeepLabV3 on grey-value images, training, checkpoints, scores.

``model`` (the network), ``data`` (training samples), ``losses``, ``train`` (the fitting loop),
``checkpoint`` (portable ``.pt`` files), ``infer`` (predictions on in-memory images),
``metrics`` (scores accumulated window by window), ``job`` (``olmap train``) and ``evaluate``
(``olmap evaluate``).
"""
