"""Training of the zoo's detectors (host side, needs torch): YOLOv5's loss, augmentation and recipe."""
