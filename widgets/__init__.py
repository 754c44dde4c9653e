"""The Jupyter (ipywidgets) panel over the control plane. Goes through ``ControlPlane`` only.

``ClusterPanel.open("cluster.toml")`` or ``ClusterPanel.demo()`` in a notebook cell; ipywidgets
(the ``notebook`` extra) is imported only when the panel is displayed (docs/notebook.md).
"""

from tidectl.widgets.panel import ClusterPanel, PanelError

__all__ = ["ClusterPanel", "PanelError"]
