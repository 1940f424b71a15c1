"""The design schema, and nothing else: pure pydantic models that import no runtime (no torch, no
pyarrow, no engine client, no stage). Exercise kinds, samplers and parsers are discriminated unions.
"""

from pretrainlab.config.design import BUILTIN_KINDS, Design, parse_design, read_design_file, resolve_path
from pretrainlab.errors import DesignError

__all__ = ["BUILTIN_KINDS", "Design", "DesignError", "parse_design", "read_design_file", "resolve_path"]
