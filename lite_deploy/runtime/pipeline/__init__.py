"""The pre/post pipeline shared by every backend: letterbox, decode, NMS, :class:`~.detector.Detector`."""
