"""insightface face models (omni_core.models.face): alignment against insightface's norm_crop,
the debug twin through insightface's own FaceAnalysis, the LBP backend on the sample corpus,
and the pack layout on disk."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

from omni_core.errors import WeightsError
from omni_core.models import face as F


@pytest.fixture(scope="module")
def model():
    return F.BuffaloLFaceModel.debug(seed=0)


@pytest.fixture(scope="module")
def clips(talking_frames):
    """Per talking clip: 4 frames (ID-Sim's truncated linspace), the middle frame and the
    people's face boxes."""
    return [(c.file, c.frames, c.mid, c.face_boxes) for c in talking_frames]


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# --------------------------------------------------------------------------------------------
# alignment


def _norm_crop(img, kps, size):
    from insightface.utils import face_align

    with warnings.catch_warnings():  # skimage 0.26 deprecates SimilarityTransform.estimate
        warnings.simplefilter("ignore", FutureWarning)
        return face_align.norm_crop(img, landmark=kps, image_size=size)


@pytest.mark.parametrize("size", [112, 224, 128])
def test_alignment_equals_insightface_norm_crop(size):
    from skimage import data

    img = np.ascontiguousarray(data.astronaut()[:, :, ::-1])  # BGR, as insightface sees it
    rng = np.random.default_rng(size)
    for _ in range(20):
        angle, scale = rng.uniform(-0.6, 0.6), rng.uniform(0.8, 3.0)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        kps = (F.ARCFACE_TEMPLATE @ rot.T * scale + rng.uniform(50, 250, 2)
               + rng.normal(0, 2, (5, 2))).astype(np.float32)  # SCRFD gives float32
        ours = F.align_face(img, kps, size)
        ref = _norm_crop(img, kps, size)
        assert ours.shape == (size, size, 3)
        assert np.array_equal(ours, ref)


def test_similarity_matrix_maps_template_onto_itself():
    mat = F.similarity_matrix(F.ARCFACE_TEMPLATE * 2 + 10, 112)
    pts = (F.ARCFACE_TEMPLATE * 2 + 10) @ mat[:, :2].T + mat[:, 2]
    np.testing.assert_allclose(pts, F.ARCFACE_TEMPLATE, atol=1e-4)
    np.testing.assert_allclose(mat[:, :2], np.eye(2) / 2, atol=1e-6)


def test_largest_face_takes_the_last_of_equal_areas():
    def face(x0, side):
        return F.DetectedFace(np.array([x0, 0, x0 + side, side], np.float32), 0.9,
                              np.zeros((5, 2), np.float32))

    faces = [face(0, 10), face(50, 20), face(100, 20), face(200, 5)]
    assert F.largest_face(faces) is faces[2]  # as sorted(..., key=area)[-1]
    assert F.largest_face([]) is None


def test_lbp_landmark_template_reproduces_the_aligned_sample_face():
    # insightface's Tom_Hanks_54745.png is ArcFace-aligned: its landmarks are the template;
    # its LBP box is x=19, y=18, side 80 (the sample corpus's checked box)
    kps = F.kps_from_box([19, 18, 99, 98])
    off = kps - F.ARCFACE_TEMPLATE
    np.testing.assert_allclose(off[:, 1], 0, atol=1e-3)
    np.testing.assert_allclose(off[:, 0], off[0, 0], atol=1e-3)  # a pure horizontal shift
    assert abs(off[0, 0]) < 4.0  # the template is centred in the box; this box sits 3 px right


# --------------------------------------------------------------------------------------------
# the debug twin against insightface's own FaceAnalysis (the call both reference scripts make)



def test_debug_twin_runs_insightface_classes(model):
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.model_zoo.scrfd import SCRFD

    assert isinstance(model.detector, SCRFD) and isinstance(model.recognizer, ArcFaceONNX)
    assert model.detector.use_kps and model.detector.fmc == 3
    assert model.detector._num_anchors == 2
    assert (model.recognizer.input_mean, model.recognizer.input_std) == (127.5, 127.5)
    assert model.crop_size == 112 and model.embedding_dim == 512
    assert "not meaningful" in model.describe()


@pytest.mark.filterwarnings("ignore:`estimate` is deprecated:FutureWarning")
def test_faces_and_embeddings_equal_face_analysis(model, face_analysis, clips):
    checked = 0
    for _, frames, mid, _ in clips:
        for frame in (frames[0], mid):
            ref = face_analysis.get(np.ascontiguousarray(frame[:, :, ::-1]))  # BGR
            ours = F.embed_faces(frame, model, F.IdSimOptions(pad_retry=False),
                                 largest_only=False)
            assert len(ours) == len(ref)
            for a, b in zip(ours, ref, strict=True):
                np.testing.assert_allclose(a.box, b.bbox, atol=1e-4)
                np.testing.assert_allclose(a.kps, b.kps, atol=1e-4)
                np.testing.assert_allclose(a.embedding, b.embedding, rtol=1e-5, atol=1e-5)
            checked += len(ours)
    assert checked > 0


# --------------------------------------------------------------------------------------------
# the LBP backend on the sample corpus


def test_lbp_finds_every_placed_face(clips):
    opts = F.IdSimOptions(detector="lbp")
    for name, _, mid, boxes in clips:
        faces, _ = F.detect_faces(mid, None, opts)
        for box in boxes:
            assert max((_iou(f.box, box) for f in faces), default=0.0) > 0.3, (name, box)


# --------------------------------------------------------------------------------------------
# loading the real packs: layout on disk (debug ONNX files stand in, same contract)


def test_from_pretrained_missing_pack_names_the_file(tmp_path):
    with pytest.raises(WeightsError, match=r"det_10g\.onnx.*omni weights fetch"):
        F.BuffaloLFaceModel.from_pretrained(root=tmp_path)


@pytest.mark.parametrize("cls,nested", [(F.BuffaloLFaceModel, False),
                                        (F.AntelopeV2FaceModel, True)])
def test_from_pretrained_loads_pack_layout(model, tmp_path, cls, nested):
    folder = tmp_path / cls.weights_entry / (cls.pack if nested else "")
    folder.mkdir(parents=True)
    shutil.copy(model.folder / model.detector_file, folder / cls.detector_file)
    shutil.copy(model.folder / model.recognizer_file, folder / cls.recognizer_file)
    loaded = cls.from_pretrained(root=tmp_path)
    assert not loaded.is_debug and loaded.pack == cls.pack
    assert loaded.folder == folder and cls.weights_entry in loaded.describe()
    img = np.zeros((64, 64, 3), np.uint8)
    np.testing.assert_allclose(loaded.embed([img]), model.embed([img]), rtol=1e-6)
