"""One folder per backend: ONNX Runtime, OpenVINO, TFLite (LiteRT) and TensorRT (its builder included).

Nothing here is imported until a model of that backend is loaded: :mod:`lite_deploy.runtime.registry` names each
backend's class by dotted path and file suffix.
"""
