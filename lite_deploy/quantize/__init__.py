"""FP16/INT8 quantization of exported detectors, judged by mAP against the FP32 model.

Modules: :mod:`.calibration` (calibration images through the runtime's pre-processing), :mod:`.qdq_onnx` (the
portable symmetric Q/DQ ONNX), :mod:`.openvino_int8`, :mod:`.tflite_int8` (full-integer TFLite),
:mod:`.gate` (the mAP gate and per-layer fallback), :mod:`.float_tail` (what every INT8 path keeps in float).
Nothing heavy is imported here, and nothing of :mod:`lite_deploy.export`: export calls quantize, never the reverse.
TensorRT's own entropy calibrator is in :mod:`lite_deploy.runtime.backends.tensorrt.calib`, with the rest of TensorRT.
"""
