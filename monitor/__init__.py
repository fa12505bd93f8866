"""Closing the loop on what the predictor served: the payload log read back (``store``), ground truth joined
to it (``feedback``), live accuracy per model version (``quality``) and its rollout gate (``live_gate``)."""
