"""Canary rollouts: champion vs challenger behind KServe (Standard, Serverless) or the local router,
gated on Prometheus metrics per model version, with MLflow alias promotion and rollback."""
