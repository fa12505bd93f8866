"""Request decoding: V1 instances and V2 tensors into the model's float64 layout (:mod:`.decode` + the C
extension ``_codec``), and binary V2 REST bodies checked before KServe decodes them (:mod:`.v2_binary`).

Imports ``bundle``, :mod:`predictor.core` (its extension loader; ``_codec.c`` includes ``core/_module.h``)
and KServe's error and tensor types; nothing from transport, guard or observe.
"""
