"""The OpenVINO backend (``.xml`` + ``.bin``): :class:`.runtime.OpenVINORuntime`."""
