"""The ONNX Runtime backend (``.onnx``): :class:`.runtime.OnnxRuntime`."""
