"""References and masks: per-frame boxes, keyframe choice, aligned crops, augmentation and the
timbre span (pure functions on arrays; the DAG's use of them is in test_dag)."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from omni_core.models.face import IdSimOptions, detect_faces, kps_from_box
from pipelines.inpair.references import (
    Keyframe,
    ReferenceOptions,
    aligned_crop,
    augment,
    image_reference,
    pick_keyframe,
    subject_order,
    timbre_span,
)


def _astronaut_face():
    """The real face in scikit-image's astronaut photo, found by the LBP cascade."""
    faces, _ = detect_faces(skimage.data.astronaut(), None,
                            IdSimOptions(detector="lbp", pad_retry=False))
    assert len(faces) == 1
    return faces[0]


def test_subject_order_is_left_to_right_ties_in_input_order():
    assert subject_order([300.0, 100.0, 300.0, 50.0]) == [3, 1, 0, 2]


def test_keyframe_is_sharp_enough_and_large_with_earliest_tie():
    frames = np.array([3, 8, 13, 18])
    boxes = np.array([[0, 0, 100, 100], [0, 0, 200, 200], [0, 0, 150, 150],
                      [0, 0, 150, 150]], np.float32)
    kps = np.stack([kps_from_box(b) for b in boxes])
    scores = np.array([0.9, 0.9, 0.9, 0.9], np.float32)
    # the largest face is the blurriest: below the median sharpness, so it is passed over
    k = pick_keyframe(frames, boxes, kps, scores, np.array([100.0, 10.0, 80.0, 80.0]))
    assert k.frame_index == 13  # 150 px, sharp enough; frame 18 ties and comes later
    np.testing.assert_allclose(k.kps, kps[2])
    # without any sharpness the score x size rule alone decides
    k = pick_keyframe(frames, boxes, kps, scores, np.full(4, np.nan))
    assert k.frame_index == 8
    with pytest.raises(Exception, match="without detections"):
        pick_keyframe(frames[:0], boxes[:0], kps[:0], scores[:0], np.zeros(0))


def test_aligned_crop_of_a_real_face_is_upright_and_its_mask_box_covers_the_face():
    img = skimage.data.astronaut()
    face = _astronaut_face()
    opts = ReferenceOptions(image_size=256)
    crop, box = aligned_crop(img, face.kps, opts)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    fx0, fy0, fx1, fy1 = face.box
    assert box[0] <= fx0 and box[1] <= fy0 and box[2] >= fx1 and box[3] >= fy1
    assert (box[2] - box[0]) < 3 * (fx1 - fx0)  # a head crop, not the whole picture
    # rotate the picture by 30 degrees: the crop from the rotated landmarks is the same face,
    # turned upright again
    import cv2

    h, w = img.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), 30, 1.0)
    turned = cv2.warpAffine(img, rot, (w, h), borderMode=cv2.BORDER_REPLICATE)
    kps = np.c_[face.kps, np.ones(5)] @ rot.T
    again, _ = aligned_crop(turned, kps.astype(np.float32), opts)
    centre = slice(64, 192)
    diff = np.abs(again[centre, centre].astype(int) - crop[centre, centre].astype(int))
    assert diff.mean() < 12, diff.mean()


def test_mask_box_is_clipped_to_the_frame():
    img = np.full((120, 160, 3), 128, np.uint8)
    crop, box = aligned_crop(img, kps_from_box([0, 0, 60, 60]), ReferenceOptions(image_size=64))
    assert crop.shape == (64, 64, 3)
    assert box[0] == 0 and box[1] == 0 and box[2] <= 160 and box[3] <= 120


def test_augment_is_seeded_and_records_what_it_did():
    crop = skimage.data.astronaut()[:256, 128:384]
    a1, r1 = augment(crop, np.random.default_rng(7))
    a2, r2 = augment(crop, np.random.default_rng(7))
    assert np.array_equal(a1, a2) and r1 == r2
    assert set(r1) == {"flip", "zoom", "brightness", "contrast", "saturation"}
    plain = ReferenceOptions(flip_p=1.0, jitter=0.0, scale=(1.0, 1.0))
    flipped, rec = augment(crop, np.random.default_rng(0), plain)
    assert rec["flip"] and np.array_equal(flipped, crop[:, ::-1])
    opts = ReferenceOptions(image_size=128, augment=True)
    face = _astronaut_face()

    key = Keyframe(0, face.box, face.kps, 1.0)
    out, box, applied = image_reference(skimage.data.astronaut(), key, opts, seed=3)
    assert out.shape == (128, 128, 3) and applied is not None
    off, box2, none = image_reference(skimage.data.astronaut(), key,
                                      ReferenceOptions(image_size=128), seed=3)
    assert none is None and np.array_equal(box, box2) and not np.array_equal(out, off)


def _speechy(spans, seconds=8.0, sr=16000):
    """Noise at -6 dBFS inside ``spans`` (seconds), near-silence elsewhere."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1e-4, int(seconds * sr)).astype(np.float32)
    for a, b in spans:
        x[int(a * sr):int(b * sr)] = rng.normal(0, 0.5, int(b * sr) - int(a * sr))
    return x


def test_timbre_span_is_own_voiced_speech_away_from_others():
    segs = [("a", 0.0, 2.0), ("b", 1.5, 3.0), ("a", 3.05, 7.5)]
    audio = _speechy([(0.0, 3.0), (3.05, 4.0), (6.0, 7.5)])
    a0, a1 = timbre_span(audio, segs, "a")
    assert a1 - a0 == pytest.approx(3.0)
    assert a0 >= 3.0 + 0.1 - 1e-9  # b's segment plus the guard
    assert a1 <= 7.5
    # the most voiced 3 s window of a's long segment: ends in the voiced run at 6.0-7.5
    assert a0 == pytest.approx(4.5)
    b = timbre_span(audio, segs, "b")  # b has 1.5 s, minus guards around a: 2.1..2.95
    assert b is None
    assert timbre_span(audio, segs, "b", ReferenceOptions(audio_min_s=0.5)) == (2.1, 2.94)
    assert timbre_span(audio, segs, "nobody") is None
    # only silence: nothing voiced to take
    assert timbre_span(np.zeros(16000 * 8, np.float32), segs, "a") is None


def test_options_validate():
    with pytest.raises(ValueError):
        ReferenceOptions(audio_min_s=4.0, audio_max_s=3.0)
    with pytest.raises(ValueError):
        ReferenceOptions(expand=0.5)
    with pytest.raises(ValueError):
        ReferenceOptions(scale=(1.2, 1.1))
