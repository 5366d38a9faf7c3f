"""config: every key validated and named in errors; command-line values coerced to the configfile's."""

import pytest
import yaml
from conftest import run_snakemake, save, solid, write_config
from snakemake.cli import parse_config

from img2npz.config import (
    ConfigError,
    coerce,
    command_line_strings,
    load_schema,
    pixel_config,
    shard_bounds,
    validate_config,
)


def test_defaults_fill_every_key():
    config = validate_config({})
    assert config["source"] == "results/demo"
    assert config["image"] == {
        "size": [256, 256],
        "resize": "center-crop",
        "dtype": "uint8",
        "background": [255, 255, 255],
        "normalize": None,
    }
    assert shard_bounds(config) == (None, None, None)  # derived from the tree by the index job
    assert config["validate"]["max_failure_fraction"] == 0.05


def test_nested_command_line_strings_are_coerced():
    # What `--config 'shards={target_images: 500}' 'image={size: [64, 32]}'` hands over.
    config = validate_config({"shards": {"target_images": "500"}, "image": {"size": "[64, 32]", "dtype": "float16"}})
    assert config["shards"]["target_images"] == 500
    assert pixel_config(config)["size"] == [64, 32]
    assert config["merge"]["compress"] is False


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"bogus": 1}, "'bogus'"),
        ({"image": {"sizes": [1, 2]}}, "'image.sizes'"),
        ({"shards": {"target_images": "abc"}}, "'shards.target_images'"),
        ({"shards": {"target_images": 0}}, "'shards.target_images'"),
        ({"image": {"size": [0, 10]}}, "'image.size[0]'"),
        ({"image": {"size": [10]}}, "'image.size'"),
        ({"image": {"resize": "squash"}}, "'image.resize'"),
        ({"image": {"dtype": "int8"}}, "'image.dtype'"),
        ({"image": {"background": [0, 0, 300]}}, "'image.background[2]'"),
        ({"extensions": ["jpg"]}, "'extensions[0]'"),
        ({"validate": {"max_failure_fraction": 2}}, "'validate.max_failure_fraction'"),
        ({"merge": {"compress": "maybe"}}, "'merge.compress'"),
        ({"preprocess": {"image_timeout_s": 0}}, "'preprocess.image_timeout_s'"),
        ({"preprocess": {"max_image_pixels": "lots"}}, "'preprocess.max_image_pixels'"),
        ({"labels": ""}, "'labels'"),
        ({"source": ["a", "b"]}, "'source'"),
        ({"validate": {"samples": -1}}, "'validate.samples'"),
        ({"image": {"normalize": {"mean": [0.5, 0.5, 0.5]}}}, "'image.normalize'"),
        ({"image": {"normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}}}, "'image.normalize'"),
        ({"shards": {"target_images": 10, "min_images": 20}}, "'shards.min_images'"),
        ({"shards": {"target_images": 10, "max_images": 5}}, "'shards.max_images'"),
    ],
)
def test_bad_values_name_the_key(raw, key):
    with pytest.raises(ConfigError) as caught:
        validate_config(raw)
    message = str(caught.value)
    assert key in message
    assert "\n" not in message


def test_extensions_are_lowercased():
    assert validate_config({"extensions": [".JPG", ".png", ".jpg"]})["extensions"] == [".jpg", ".png"]


def test_normalize_with_float_dtype_is_accepted():
    norm = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]}
    config = validate_config({"image": {"dtype": "float32", "normalize": norm}})
    assert pixel_config(config)["normalize"] == norm


# A value for every key of the schema, none of them the default: what a user may set.
EVERY_KEY = {
    "layout": "shards",
    "source": "data/pets",
    "extensions": [".jpg", ".webp"],
    "labels": "none",
    "splits": {"train": 0.8, "val": 0.1, "test": 0.1},
    "group_by": "^[^/]+/(subject\\d+)_",
    "group_near_duplicates": True,
    "image": {
        "size": [128, 96],
        "resize": "pad",
        "dtype": "float32",
        "background": [0, 10, 20],
        "normalize": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]},
    },
    "preprocess": {"image_timeout_s": 2.5, "max_image_pixels": 1000000},
    "shards": {"target_images": 500, "min_images": 10, "max_images": 2000, "compact_dropped": 0.3, "compact_small": 4},
    "filters": {"min_width": 16, "min_height": 12, "max_aspect": 3.5, "drop_constant": True, "drop_duplicates": "near"},
    "merge": {"compress": True, "streams": 3, "threads": 5},
    "validate": {
        "threads": 3,
        "max_failure_fraction": 0.1,
        "samples": 16,
        "min_class_images": 3,
        "max_class_imbalance": 4.5,
        "near_duplicate_bits": 30,
        "near_duplicate_crops": False,
        "near_duplicate_crop_bits": 40,
        "min_hash_quality": 10,
        "min_field_quality": 30,
        "fail_on": ["class_counts", "split_fractions"],
    },
}


def _leaves(value, schema, prefix=""):
    """Dotted names of the schema's named keys that ``value`` sets."""
    for key, sub in schema.get("properties", {}).items():
        if isinstance(value, dict) and key in value:
            yield f"{prefix}{key}"
            yield from _leaves(value[key], sub, f"{prefix}{key}.")


def _schema_keys(schema, prefix=""):
    for key, sub in schema.get("properties", {}).items():
        yield f"{prefix}{key}"
        yield from _schema_keys(sub, f"{prefix}{key}.")


def command_line(key: str, value) -> str:
    """``key=value`` as a user types it after ``--config`` (nested values in YAML flow style)."""
    if isinstance(value, dict | list):
        return f"{key}={yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()}"
    return f"{key}={value}"


def test_every_key_example_sets_every_schema_key():
    schema = load_schema()
    assert set(_schema_keys(schema)) == set(_leaves(EVERY_KEY, schema))


@pytest.mark.parametrize("key", list(EVERY_KEY))
def test_command_line_gives_what_the_configfile_gives(key):
    from_file = validate_config({key: EVERY_KEY[key]})
    from_cli = validate_config(parse_config([command_line(key, EVERY_KEY[key])]))
    assert from_cli == from_file
    assert from_cli[key] == EVERY_KEY[key]


def test_readme_splits_command_line():
    # README: snakemake --cores all --config 'splits={train: 0.8, val: 0.1, test: 0.1}'
    raw = parse_config(["splits={train: 0.8, val: 0.1, test: 0.1}"])
    assert raw["splits"] == {"train": "0.8", "val": "0.1", "test": "0.1"}  # what Snakemake hands over
    assert validate_config(raw)["splits"] == {"train": 0.8, "val": 0.1, "test": 0.1}


@pytest.mark.parametrize(
    ("entry", "path", "expected"),
    [
        ("splits=null", ("splits",), None),
        ("shards={target_images: 50, min_images: null}", ("shards", "min_images"), None),
        ("image={dtype: float16, normalize: null}", ("image", "normalize"), None),
        ("merge={compress: true}", ("merge", "compress"), True),
        ("validate={fail_on: [constant_images]}", ("validate", "fail_on"), ["constant_images"]),
    ],
)
def test_command_line_nulls_booleans_and_lists(entry, path, expected):
    value = validate_config(parse_config([entry]))
    for key in path:
        value = value[key]
    assert value == expected


def test_bad_value_inside_a_free_form_map_names_the_key():
    with pytest.raises(ConfigError, match=r"'splits\.val'"):
        validate_config(parse_config(["splits={train: 0.8, val: lots}"]))


def test_coerce_walks_every_shape_a_schema_can_give():
    schema = {
        "type": "object",
        "properties": {
            "pair": {
                "type": "array",
                "prefixItems": [{"type": "string"}, {"type": "number"}],
                "items": {"type": "integer"},
            }
        },
        "patternProperties": {"^n_": {"type": "integer"}},
        "additionalProperties": {"type": "boolean"},
    }
    raw = {"pair": ["7", "2.5", "4", "5"], "n_files": "3", "verbose": "true"}
    assert coerce(raw, schema) == {"pair": ["7", 2.5, 4, 5], "n_files": 3, "verbose": True}


def test_strings_stay_strings_where_the_schema_allows_them():
    schema = {"type": "object", "additionalProperties": {"type": ["string", "number"]}}
    assert coerce({"a": "1.5", "b": "null"}, schema) == {"a": "1.5", "b": "null"}
    assert validate_config(parse_config(["labels=true"]))["labels"] == "true"


@pytest.mark.parametrize("typed", ["2024", "007", "1e3", "2024.10", "true"])
def test_a_source_folder_with_a_numeric_name_is_taken_as_typed(typed):
    entries = [f"source={typed}"]
    raw = parse_config(entries)  # Snakemake: 2024, 7, 1000.0, 2024.1, True
    assert validate_config(command_line_strings(raw, entries))["source"] == typed


def test_a_number_from_a_configfile_is_a_folder_name():
    assert validate_config({"source": 2024, "labels": "none"})["source"] == "2024"


def test_a_tilde_in_source_and_labels_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = validate_config({"source": "~/pets", "labels": "~/labels.csv"})
    assert config["source"] == str(tmp_path / "pets") and config["labels"] == str(tmp_path / "labels.csv")
    assert validate_config({"labels": "none"})["labels"] == "none"


def test_an_extension_without_its_dot_says_so_not_the_regex():
    with pytest.raises(ConfigError) as caught:
        validate_config(parse_config(["extensions=[jpg, webp]"]))
    message = str(caught.value)
    assert "'extensions[0]': 'jpg'" in message and "leading dot" in message and "^" not in message


@pytest.mark.slow
def test_snakemake_takes_a_numeric_source_folder_from_the_command_line(tmp_path):
    for name in ("2024", "007"):
        save(solid((9, 9, 9)), tmp_path / name / "cat" / "a.png")
    config = write_config(tmp_path / "config.yaml")
    for name in ("2024", "007"):
        done = run_snakemake(tmp_path, config, "--dry-run", "--config", f"source={name}")
        assert "index_images" in done.stdout, done.stdout + done.stderr
