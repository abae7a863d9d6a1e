"""On-device inference: the served models as self-contained ONNX Runtime and LiteRT bundles.

``tritonctl build edge`` (``tritonctl.recipes.edge``) writes ``edge/<model>-<runtime>-<precision>/``
folders, each with its model, the pre/post-processing the served ensemble applies, sample
inputs, ``manifest.json`` (inputs, outputs, shapes, precision, checksums, source model, build
stamp) and ``runner.py`` (numpy + ``tokenizers``/Pillow + one runtime; see ``runner``).

Modules: ``runner`` (what ships), ``bundle`` (assembly and manifest), ``onnx_runtime`` and
``litert`` (conversion), ``evaluate`` (accuracy through the runner), ``measure`` (the timings),
``report`` (table and plot), ``build`` (the steps in order).
"""

from tritonctl.edge.bundle import Spec

#: every bundle the build makes; LiteRT ones only where ``tritonctl[edge]`` is installed
SPECS = (
    Spec("text_encoder", "onnxruntime", "fp32", "text_encoder", "text_embedding"),
    Spec("text_encoder", "onnxruntime", "int8", "text_encoder_int8", "text_embedding_int8"),
    Spec("digits_student", "onnxruntime", "fp32", "digits_student", "digit_classifier_student"),
    Spec("digits_teacher", "onnxruntime", "static_int8", "digits_int8", "digit_classifier_int8"),
    *(
        Spec(f"digits_{m}", "litert", p, f"digits_{m}", f"digit_classifier_{m}")
        for m in ("teacher", "student")
        for p in ("fp32", "dynamic_int8", "static_int8")
    ),
    Spec("text_encoder", "litert", "fp32", "text_encoder", "text_embedding"),
)

__all__ = ["SPECS", "Spec"]
