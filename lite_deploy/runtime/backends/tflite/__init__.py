"""The TFLite / LiteRT backend (``.tflite``): :class:`.runtime.TFLiteRuntime`."""
