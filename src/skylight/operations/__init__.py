"""What users ask of the control plane: the operations the API's routes call."""
