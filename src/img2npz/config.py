"""Load, coerce and validate the workflow configuration against its schema.

The schema ships inside the package (``config.schema.yaml`` beside this module; the workflow's
``workflow/schemas/config.schema.yaml`` is a link to it), so an installed package validates a
config without the source tree.

Snakemake hands nested ``--config`` values over as strings (``shards={target_images: 500}`` gives
``'500'``), so values are coerced by what the schema expects before validating. Every error names
the key, so a bad value stops the run with one readable line before any job starts.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from img2npz.splits import check_fractions, group_function

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")
DEMO_SOURCE = "results/demo"
LABEL_MODES = ("folder", "none")


class ConfigError(ValueError):
    """A bad configuration value; the message names the key."""


def load_schema(path: str | os.PathLike = SCHEMA_PATH) -> dict:
    """Read at every Snakemake start: libyaml's loader where there is one (10x faster)."""
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _types(schema: dict) -> set[str]:
    kind = schema.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def coerce(value: Any, schema: dict) -> Any:
    """Parse strings as YAML where the schema wants something other than a string.

    Walks every shape the schema can give a value: named ``properties``, ``patternProperties`` and
    ``additionalProperties`` (maps whose keys the user chooses, such as ``splits``), ``prefixItems``
    and ``items``. Where a string is allowed, a string is left alone.
    """
    types = _types(schema)
    if isinstance(value, str) and types and "string" not in types:
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    if types == {"string"} and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # a folder named 2024 (YAML and Snakemake's --config read it as a number)
    if isinstance(value, dict):
        return {key: coerce(item, _member_schema(schema, key)) for key, item in value.items()}
    if isinstance(value, list):
        return [coerce(item, _item_schema(schema, number)) for number, item in enumerate(value)]
    return value


def _member_schema(schema: dict, key: str) -> dict:
    """The schema of map member ``key``, or ``{}`` (no coercion) where the schema names none."""
    if key in schema.get("properties", {}):
        return schema["properties"][key]
    for pattern, sub in schema.get("patternProperties", {}).items():
        if re.search(pattern, key):
            return sub
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else {}


def _item_schema(schema: dict, number: int) -> dict:
    """The schema of list item ``number``, or ``{}``."""
    prefix = schema.get("prefixItems", [])
    if number < len(prefix):
        return prefix[number]
    items = schema.get("items")
    return items if isinstance(items, dict) else {}


def command_line_strings(raw: dict, config_args: Sequence[str] | None, schema: dict | None = None) -> dict:
    """``raw`` with its top-level string keys as typed after ``--config``.

    Snakemake reads ``--config source=2024`` as the integer 2024 (and ``007`` as 7, ``1e3`` as
    1000.0), and no quoting survives the shell; the text itself is still in its command line
    (``config_args``, ``key=value`` entries, the last one winning), so it is taken from there.
    """
    schema = schema or load_schema()
    restored = dict(raw)
    for entry in config_args or ():
        key, sep, text = entry.partition("=")
        member = schema.get("properties", {}).get(key)
        if sep and member is not None and _types(member) == {"string"} and not isinstance(raw.get(key), str):
            restored[key] = text
    return restored


def fill_defaults(value: Any, schema: dict) -> Any:
    if not isinstance(value, dict) or "properties" not in schema:
        return value
    filled = dict(value)
    for key, sub in schema["properties"].items():
        if key not in filled and "default" in sub:
            filled[key] = copy.deepcopy(sub["default"])
        if key in filled:
            filled[key] = fill_defaults(filled[key], sub)
    return filled


def _key_name(error: jsonschema.ValidationError) -> str:
    name = ""
    for part in error.absolute_path:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        prefix = _key_name(error) + "." if error.absolute_path else ""
        names = ", ".join(f"'{prefix}{name}'" for name in unknown)
        return f"unknown config key {names} (allowed here: {', '.join(allowed)})"
    if error.validator == "pattern" and "x-message" in error.schema:  # the schema's words, not its regex
        return f"config key '{_key_name(error)}': {error.instance!r} {error.schema['x-message']}"
    return f"config key '{_key_name(error)}': {error.message}"


def _check_semantics(config: dict) -> None:
    image, shards = config["image"], config["shards"]
    if image["normalize"] is not None and image["dtype"] == "uint8":
        raise ConfigError("config key 'image.normalize': needs a float image.dtype (float16 or float32), not uint8")
    target = shards["target_images"]
    low = shards["min_images"]
    high = shards["max_images"]
    if target is None:
        if low is not None and high is not None and low > high:
            raise ConfigError(f"config key 'shards.min_images': {low} is larger than shards.max_images ({high})")
    elif low is not None and low > target:
        raise ConfigError(f"config key 'shards.min_images': {low} is larger than shards.target_images ({target})")
    elif high is not None and high < target:
        raise ConfigError(f"config key 'shards.max_images': {high} is smaller than shards.target_images ({target})")
    config["extensions"] = sorted({ext.lower() for ext in config["extensions"]})
    config["source"] = os.path.expanduser(config["source"])
    if label_mode(config) == "csv":
        config["labels"] = os.path.expanduser(config["labels"])
    if config["splits"] is not None and (problem := check_fractions(config["splits"])):
        raise ConfigError(f"config key 'splits': {problem}")
    try:
        group_function(config["group_by"])
    except (re.error, ValueError) as error:
        raise ConfigError(f"config key 'group_by': {error}") from None


def validate_config(raw: dict | None, schema: dict | None = None) -> dict:
    """Return a validated copy of ``raw`` with defaults filled in; raise :class:`ConfigError`."""
    schema = schema or load_schema()
    config = fill_defaults(coerce(dict(raw or {}), schema), schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        raise ConfigError("; ".join(dict.fromkeys(_describe(error) for error in errors)))
    _check_semantics(config)
    return config


def shard_bounds(config: dict) -> tuple[int | None, int | None, int | None]:
    """(target, min, max) as configured: None where the index job derives it from the tree's size
    (:func:`img2npz.sharding.resolve_bounds`)."""
    shards = config["shards"]
    return shards["target_images"], shards["min_images"], shards["max_images"]


def pixel_config(config: dict) -> dict:
    """The part of the config that shapes the pixels: a change to it rebuilds every shard."""
    image = config["image"]
    return {
        "size": list(image["size"]),
        "resize": image["resize"],
        "dtype": image["dtype"],
        "background": list(image["background"]),
        "normalize": image["normalize"],
    }


def label_mode(config: dict) -> str:
    """'folder', 'none' or 'csv'."""
    return config["labels"] if config["labels"] in LABEL_MODES else "csv"


def check_paths(config: dict, workdir: str | os.PathLike = ".") -> None:
    """Fail early, naming the key, when the source or labels file is missing."""
    base = Path(workdir)
    source = base / config["source"]
    if config["source"] != DEMO_SOURCE and not source.is_dir():
        raise ConfigError(f"config key 'source': {config['source']!r} is not a directory")
    if label_mode(config) == "csv" and not (base / config["labels"]).is_file():
        raise ConfigError(
            f"config key 'labels': {config['labels']!r} is neither 'folder', 'none' nor an existing CSV file"
        )
