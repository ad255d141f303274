"""Everything TensorRT, in the order it runs on the device (TensorRT 8.5 to 11; Python 3.8, no torch):

- :mod:`.api`: import ``tensorrt``, its logger, and the standard plugins (``init_libnvinfer_plugins``), which
  both the build (parsing an ``EfficientNMS_TRT`` node) and the load (deserialising an engine holding one) need;
- :mod:`.build`: ``lite-deploy build-engine``: the per-version build route (network flags, precision flags or
  strong typing, implicit INT8 calibration or explicit Q/DQ, NMS plugin kept in float), then the engine is
  verified against its ONNX on ONNX Runtime (:mod:`.verify`);
- :mod:`.calib`: the ``IInt8EntropyCalibrator2`` of the implicit INT8 route and its checked cache;
- :mod:`.compat`: engine/device compatibility, tensor I/O, profiles, shapes and dtypes (pure functions);
- :mod:`.cuda`: device buffers and a stream over cuda-python or pycuda;
- :mod:`.engine`: :class:`~.engine.TensorRTRuntime`, the backend that runs an engine.

Nothing here imports ``tensorrt`` at import time: each entry point calls :func:`.api.import_tensorrt`, so the
modules load (and are tested against per-version stand-ins) where TensorRT is absent. The host-side parts of the
TensorRT path need torch and stay in :mod:`lite_deploy.export` (tracing the ONNX, the ``EfficientNMS_TRT`` node in
:mod:`lite_deploy.export.nms`) and :mod:`lite_deploy.quantize.qdq_onnx` (the Q/DQ INT8 ONNX, made with ONNX
Runtime's quantizer on the host).
"""
