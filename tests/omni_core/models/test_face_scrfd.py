"""The real insightface SCRFD detectors (``../shared/weights/insightface-scrfd``: SCRFD-500M of
buffalo_s/buffalo_sc, SCRFD-2.5G of buffalo_m) through insightface's own classes and through
the suite's detection path (:class:`omni_core.models.face.ScrfdDetector`,
:func:`~omni_core.models.face.detect_faces`, a pack loaded by ``from_pretrained``), on the
release's reference photos and on the sample corpus's frames."""

from __future__ import annotations

import hashlib
import os
import warnings

import numpy as np
import pytest

from omni_core.errors import WeightsError
from omni_core.media import read_image
from omni_core.models import face as F
from pipelines.inpair.faces import FaceOptions

#: sha256 of the upstream files (../shared/weights/README.md)
SHA256 = {
    "det_500m.onnx": "5e4447f50245bbd7966bd6c0fa52938c61474a04ec7def48753668a9d8b4ea3a",
    "det_2.5g.onnx": "041f73f47371333d1d17a6fee6c8ab4e6aecabefe398ff32cca4e2d5eaee0af9",
}
#: the release's reference photos: one face each (a close-up portrait, a young man, the Mona
#: Lisa)
PHOTOS = ("oneip/imgs/9/9.png", "twoip/imgs/20/0.png", "twoip/imgs/20/1.png")
TOL = 1e-4

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module", params=sorted(SHA256))
def det_path(request, shared_dir):
    return shared_dir / "weights" / "insightface-scrfd" / request.param


@pytest.fixture(scope="module")
def reference(det_path):
    """insightface's own SCRFD of the file (``model_zoo.get_model``, as FaceAnalysis builds it)."""
    from insightface.model_zoo import model_zoo
    from insightface.model_zoo.scrfd import SCRFD

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = model_zoo.get_model(str(det_path), providers=["CPUExecutionProvider"])
    assert isinstance(det, SCRFD)
    return det


@pytest.fixture(scope="module")
def ours(det_path):
    return F.ScrfdDetector.from_file(det_path)


@pytest.fixture(scope="module")
def photos(shared_dir):
    root = shared_dir / "data" / "release_test_case"
    return {name: read_image(root / name) for name in PHOTOS}


@pytest.fixture(scope="module")
def corpus_frames(talking_frames):
    """Per talking clip: 5 frames (ID-Sim's 4-frame linspace and the middle one) and the
    truth's face and mouth boxes of its people."""
    return [(c.file, np.concatenate([c.frames, c.mid[None]]), c.face_boxes, c.mouth_boxes)
            for c in talking_frames]


def _insightface_detect(det, image_rgb, size, thresh=0.5):
    """insightface's SCRFD.prepare + detect on the BGR image."""
    det.prepare(ctx_id=-1, input_size=tuple(size), det_thresh=thresh)
    return det.detect(np.ascontiguousarray(image_rgb[:, :, ::-1]), input_size=tuple(size))


def _assert_same(faces, ref):
    boxes, kpss = ref
    assert len(faces) == boxes.shape[0]
    for f, box, kps in zip(faces, boxes, kpss, strict=True):
        np.testing.assert_allclose(f.box, box[:4], atol=TOL, rtol=0)
        np.testing.assert_allclose(f.kps, kps, atol=TOL, rtol=0)
        assert abs(f.score - float(box[4])) <= TOL


def _plausible(face) -> bool:
    """5 landmarks inside the box, eyes left to right and above the mouth corners."""
    x0, y0, x1, y1 = face.box
    k = face.kps
    inside = bool(np.all((k[:, 0] >= x0) & (k[:, 0] <= x1) & (k[:, 1] >= y0) & (k[:, 1] <= y1)))
    return inside and k[0, 0] < k[1, 0] and k[3, 0] < k[4, 0] and max(k[:2, 1]) < min(k[3:, 1])


def test_files_are_the_upstream_detectors(det_path, reference):
    assert hashlib.sha256(det_path.read_bytes()).hexdigest() == SHA256[det_path.name]
    # SCRFD with keypoints, 3 strides, 2 anchors per location (the *_bnkps / det_* family)
    assert reference.use_kps and reference.fmc == 3 and reference._num_anchors == 2


# --------------------------------------------------------------------------------------------
# the release's reference photos


def test_insightface_finds_the_one_face_of_each_release_photo(reference, photos):
    # det_size 320 as both FaceSim-Arc scripts (ID-Sim's IdSimOptions default)
    for name, img in photos.items():
        boxes, kpss = _insightface_detect(reference, img, (320, 320))
        assert boxes.shape[0] == 1, name
        face = F.DetectedFace(box=boxes[0, :4], score=float(boxes[0, 4]), kps=kpss[0])
        assert face.score > 0.7 and _plausible(face), name


def test_suite_path_equals_insightface_on_release_photos(ours, reference, photos):
    opts = F.IdSimOptions()  # the ID-Sim reference-image protocol: 320, grey-padding retry
    for name, img in photos.items():
        faces, bgr = F.detect_faces(img, ours, opts)
        assert len(faces) == 1 and not faces[0].padded, name
        assert bgr.shape == img.shape
        _assert_same(faces, _insightface_detect(reference, img, opts.det_size))


def test_close_ups_need_the_padding_retry_at_640(ours, reference, photos):
    """At 640x640 (insightface's FaceAnalysis default and the faces stage's det_size) these
    close-up faces are larger than SCRFD's biggest anchors and are not found (best score under
    0.1); the grey border of the FaceSim-Arc retry shrinks them and finds each one, exactly as
    insightface does on the padded image."""
    import cv2

    size = FaceOptions().det_size
    assert size == (640, 640)
    for name, img in photos.items():
        assert _insightface_detect(reference, img, size)[0].shape[0] == 0, name
        assert F.detect_faces(img, ours, F.IdSimOptions(det_size=size, pad_retry=False))[0] == []
        faces, bgr = F.detect_faces(img, ours, F.IdSimOptions(det_size=size))
        assert len(faces) == 1 and faces[0].padded and _plausible(faces[0]), name
        h, w = img.shape[:2]
        top, left = int(h * 0.25), int(w * 0.25)
        padded = cv2.copyMakeBorder(img, top, top, left, left, cv2.BORDER_CONSTANT,
                                    value=(128, 128, 128))
        assert bgr.shape == padded.shape
        _assert_same(faces, _insightface_detect(reference, padded, size))


def test_the_faces_stage_finds_close_ups_through_the_retry(ours, photos):
    """The in-pair faces stage on a still "clip" of each close-up photo: one track, its box in
    the photo's pixels; without the retry (``faces.pad_retry: false``) nothing."""
    from pipelines.inpair.faces import analyze_faces

    class Pack:  # the real detector; a constant embedder (one face per frame here)
        crop_size = 112

        def detect(self, bgr, det_size, det_thresh):
            return ours.detect(bgr, det_size, det_thresh)

        def embed(self, crops):
            return np.ones((len(crops), 8), np.float32)

    for name, img in photos.items():
        clip = np.stack([img] * 10)
        on = analyze_faces(clip, 5.0, Pack(), FaceOptions(backend="scrfd", sample_fps=5.0))
        off = analyze_faces(clip, 5.0, Pack(), FaceOptions(backend="scrfd", sample_fps=5.0,
                                                            pad_retry=False))
        assert off.tracks == [], name
        assert len(on.tracks) == 1, name
        x0, y0, x1, y1 = on.tracks[0].boxes[0]
        h, w = img.shape[:2]
        assert -0.05 * w <= x0 < x1 <= 1.05 * w and -0.05 * h <= y0 < y1 <= 1.05 * h, name
        assert (x1 - x0) * (y1 - y0) > 0.15 * w * h, name  # a close-up: a large face


# --------------------------------------------------------------------------------------------
# the sample corpus's frames (real face photos placed on a backdrop)


def test_every_corpus_face_found_as_insightface_finds_it(ours, reference, corpus_frames):
    opts = FaceOptions().detection_options()  # the in-pair faces stage: 640 (no retry needed)
    checked = 0
    for name, frames, boxes, mouths in corpus_frames:
        for frame in frames:
            faces, _ = F.detect_faces(frame, ours, opts)
            _assert_same(faces, _insightface_detect(reference, frame, opts.det_size))
            assert len(faces) == len(boxes), name  # every placed face, nothing else
            for box, mouth in zip(boxes, mouths, strict=True):
                face = max(faces, key=lambda f: F.box_iou(f.box, box))
                assert F.box_iou(face.box, box) > 0.5 and _plausible(face), (name, box)
                cx, cy = face.kps[3:].mean(axis=0)  # mouth corners' middle in the mouth box
                assert mouth[0] - 8 <= cx <= mouth[2] + 8 and mouth[1] - 8 <= cy <= mouth[3] + 8
                checked += 1
    assert checked == 60  # 6 clips (1, 1, 2, 2, 3, 3 people) x 5 frames


# --------------------------------------------------------------------------------------------
# a pack whose detector is the real file: from_pretrained, embed_faces, FaceAnalysis


@pytest.fixture(scope="module")
def debug_pack():
    return F.BuffaloLFaceModel.debug(seed=0)


def test_pack_with_real_detector_equals_face_analysis(det_path, ours, photos, debug_pack,
                                                      tmp_path_factory):
    """A pack class whose detector file is the real SCRFD (the recogniser is the debug twin's
    ArcFace-contract ONNX), loaded by the suite's ``from_pretrained`` from a weights folder of
    symlinks; its faces equal insightface's FaceAnalysis on the same folder."""
    from insightface.app import FaceAnalysis

    class SmallPack(F.BuffaloLFaceModel):
        detector_file = det_path.name

    root = tmp_path_factory.mktemp("weights")
    folder = root / SmallPack.weights_entry
    folder.mkdir()
    os.symlink(det_path, folder / det_path.name)
    os.symlink(debug_pack.folder / debug_pack.recognizer_file, folder / "w600k_r50.onnx")
    pack = SmallPack.from_pretrained(root=root)
    assert not pack.is_debug and pack.scrfd.detector.use_kps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app = FaceAnalysis(name=str(folder), root=str(folder),
                           allowed_modules=["detection", "recognition"],
                           providers=["CPUExecutionProvider"])
        app.prepare(ctx_id=-1, det_size=(320, 320))
    opts = F.IdSimOptions(pad_retry=False)
    for name, img in photos.items():
        faces = F.embed_faces(img, pack, opts, largest_only=False)
        with warnings.catch_warnings():  # skimage 0.26 deprecates SimilarityTransform.estimate
            warnings.simplefilter("ignore", FutureWarning)
            ref = app.get(np.ascontiguousarray(img[:, :, ::-1]))
        assert len(faces) == len(ref) == 1, name
        np.testing.assert_allclose(faces[0].box, ref[0].bbox, atol=TOL, rtol=0)
        np.testing.assert_allclose(faces[0].kps, ref[0].kps, atol=TOL, rtol=0)
        np.testing.assert_allclose(faces[0].embedding, ref[0].embedding, rtol=1e-5, atol=1e-5)
        bare, _ = F.detect_faces(img, ours, opts)
        np.testing.assert_array_equal(bare[0].box, faces[0].box)


def test_detector_file_errors(tmp_path, debug_pack):
    with pytest.raises(WeightsError, match=r"not found: .*det_500m\.onnx"):
        F.ScrfdDetector.from_file(tmp_path / "det_500m.onnx")
    with pytest.raises(WeightsError, match="not an SCRFD face detector"):
        F.ScrfdDetector.from_file(debug_pack.folder / debug_pack.recognizer_file)
    with pytest.raises(WeightsError, match="not an insightface face detector"):
        F.ScrfdDetector(object())
