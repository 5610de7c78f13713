"""The simulated backend: calibrated presets (``presets``) and the Generator + Scorer pair that plays them
(``backend``). It sits beside ``generators/`` and ``scorers/`` and imports nothing above them."""
