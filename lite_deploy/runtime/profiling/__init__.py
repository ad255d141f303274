"""Per-model timing on this machine: :func:`.profile.profile`, FLOPs, machine facts, latency statistics."""
