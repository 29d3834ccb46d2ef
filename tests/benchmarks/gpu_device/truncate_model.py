"""Cut a llama-architecture GGUF to its first N layers: a small real model for a device check.

The device tool carries at most 64 MiB, and the embedded SmolLM2-135M is 94 MB; its first 6
layers with the full vocabulary (45 MB) still tokenize, load and generate on a real
llama-server, which is all a throughput check needs (the text it writes is nonsense).
Run with the ``gguf`` package: ``python truncate_model.py SRC.gguf DST.gguf 6``.
"""

from __future__ import annotations

import sys

import gguf
from gguf.constants import GGUFValueType


def truncate(src: str, dst: str, keep: int) -> None:
    """Copy every key and the tensors of layers 0..keep-1, with ``block_count`` set to ``keep``."""
    reader = gguf.GGUFReader(src)
    writer = gguf.GGUFWriter(dst, arch=reader.fields["general.architecture"].contents())
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue  # written by the writer itself
        value = keep if key.endswith(".block_count") else field.contents()
        if key == "general.name":
            value = f"{value} (first {keep} layers, for a device check)"
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(key, value, vtype, sub_type=sub)
    for tensor in reader.tensors:
        if tensor.name.startswith("blk.") and int(tensor.name.split(".")[1]) >= keep:
            continue
        writer.add_tensor(tensor.name, tensor.data, raw_shape=tensor.data.shape, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    truncate(sys.argv[1], sys.argv[2], int(sys.argv[3]))
