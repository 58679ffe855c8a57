"""Training our own emotion model (the ``train`` extra: torch, litert-torch, ai-edge-quantizer).

Nothing in the runtime daemon imports this package; it is used by ``make train`` only.
"""
