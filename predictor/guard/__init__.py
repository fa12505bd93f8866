"""The guard, protocol-neutral: API keys (:mod:`.auth`), token buckets (:mod:`.ratelimit`), the decision
and its defaults (:mod:`.policy`), and the one-line client-error log (:mod:`.client_errors`).

Imports ``common`` and itself (no KServe); the transport turns its decisions into answers.
"""
