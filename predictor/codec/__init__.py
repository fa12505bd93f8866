"""Request decoding: V1 instances and V2 tensors into the model's float64 layout (:mod:`.decode`), and
binary V2 REST bodies checked before KServe decodes them (:mod:`.v2_binary`).

Imports ``bundle``, :mod:`predictor.core` (its C decoder lives in ``core/_fastpath.c`` for now) and KServe's
error and tensor types; nothing from transport, guard or observe.
"""
