"""Background tasks of a replica: periodic loops that the control plane starts and stops."""
