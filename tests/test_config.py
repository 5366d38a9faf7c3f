import pytest

from img2npz.config import ConfigError, pixel_config, shard_bounds, validate_config


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
    assert shard_bounds(config) == (1000, 100, 2000)
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
        ({"source": 5}, "'source'"),
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
