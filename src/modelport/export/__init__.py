"""Taking a model to where the product runs: ONNX files, the browser, apps, containers, clusters.

``modelport export`` (:mod:`.onnx_file`, :mod:`.web`) and ``modelport package`` (:mod:`.wheel`,
:mod:`.docker`, :mod:`.kubernetes`, :mod:`.kserve`, :mod:`.knative`, :mod:`.serverless`) all start
from one :class:`~modelport.export.source.ExportSource` and write through
:mod:`.output` (atomic folders, refused when they exist unless forced). Every generated file
carries :meth:`Provenance.line` — which modelport and which model version made it.
"""

from modelport.export.onnx_file import OnnxExport, OnnxOptions, ParityReport, export_onnx
from modelport.export.source import ExportSource, Provenance

__all__ = ["ExportSource", "OnnxExport", "OnnxOptions", "ParityReport", "Provenance",
           "export_onnx"]
