"""The ONNX metadata contract: the one reader and writer of the ``dtp_stereo.*`` properties.

:func:`dtp_stereo.export.export_onnx` writes them; the ONNX Runtime and TensorRT backends, the
``auto`` backend choice and the INT8/FP16 converters read them. Keys (``metadata_props``, all
string values):

============================  ==============================================================
``dtp_stereo.model_name``     registered model name (``build_model``)
``dtp_stereo.max_disparity``  D, disparity planes of the network (pixels)
``dtp_stereo.size_divisor``   network H and W must be multiples of it
``dtp_stereo.input_size``     ``HxW`` pixels, only in fixed-shape exports
``dtp_stereo.precision``      ``int8`` / ``fp16`` after conversion (absent = fp32)
============================  ==============================================================
"""

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = ["PREFIX", "OnnxMetadata", "OnnxMetadataError", "read_onnx_metadata",
           "session_metadata", "write_onnx_metadata"]

PREFIX = "dtp_stereo."


class OnnxMetadataError(ValueError):
    """A ``dtp_stereo.*`` property that cannot be parsed; the message names file and key."""


def _positive_int(text: str, key: str, source: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise OnnxMetadataError(f"{source}: metadata {PREFIX}{key} = {text!r} is not a positive "
                                "integer")
    return value


@dataclass(frozen=True)
class OnnxMetadata:
    """The ``dtp_stereo.*`` properties of an exported graph (``None`` = absent)."""

    model_name: str = "unknown"
    max_disparity: Optional[int] = None
    size_divisor: Optional[int] = None
    input_size: Optional[Tuple[int, int]] = None  # (H, W) pixels of a fixed-shape export
    precision: Optional[str] = None

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "ONNX file") -> "OnnxMetadata":
        """Parse ``{key: value}`` properties (other prefixes are ignored).

        Raises:
            OnnxMetadataError: a malformed value (``source`` and the key are named).
        """
        own = {k[len(PREFIX):]: str(v) for k, v in props.items() if k.startswith(PREFIX)}
        values: Dict[str, Any] = {}
        if "model_name" in own:
            values["model_name"] = own["model_name"]
        for key in ("max_disparity", "size_divisor"):
            if key in own:
                values[key] = _positive_int(own[key], key, source)
        if "input_size" in own:
            parts = own["input_size"].lower().split("x")
            if len(parts) != 2:
                raise OnnxMetadataError(f"{source}: metadata {PREFIX}input_size = "
                                        f"{own['input_size']!r} is not HxW")
            values["input_size"] = tuple(_positive_int(p, "input_size", source) for p in parts)
        if "precision" in own:
            values["precision"] = own["precision"]
        return cls(**values)

    def to_props(self) -> Dict[str, str]:
        """``{"dtp_stereo.<key>": value}`` of the fields that are set."""
        props: Dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "input_size":
                value = f"{value[0]}x{value[1]}"
            props[PREFIX + f.name] = str(value)
        return props


def read_onnx_metadata(path: str) -> OnnxMetadata:
    """The metadata of an ONNX file (the graph's weights are not loaded).

    Raises:
        OnnxMetadataError: a malformed ``dtp_stereo.*`` value.
        OSError, onnx errors: the file cannot be read.
    """
    import onnx

    model = onnx.load(path, load_external_data=False)
    return OnnxMetadata.from_props({p.key: p.value for p in model.metadata_props}, str(path))


def session_metadata(session: Any, source: str = "ONNX Runtime session") -> OnnxMetadata:
    """The metadata of an ``onnxruntime.InferenceSession``."""
    return OnnxMetadata.from_props(dict(session.get_modelmeta().custom_metadata_map), source)


def write_onnx_metadata(model: Any, metadata: OnnxMetadata) -> Any:
    """Set ``metadata``'s properties on an ``onnx.ModelProto`` in place (existing ``dtp_stereo.*``
    entries are replaced, others kept); returns the model. Save it with ``onnx.save``."""
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for key, value in kept + list(metadata.to_props().items()):
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    return model
