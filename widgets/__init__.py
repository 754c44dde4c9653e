"""The Jupyter (ipywidgets) panel over the control plane. Goes through ``ControlPlane`` only."""
