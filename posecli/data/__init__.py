"""Data sources for posecli: synthetic ground-truth renderers (``posecli.data.synth``)."""
