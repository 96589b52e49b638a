"""The options beyond the paper: ASL as L_p, the CSRA head, the weights of an old EMA run,
the teacher's test-time augmentation (its evaluation)."""

import os

import pytest
import torch
from detectron2.data import transforms as T
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from torch.nn import functional as F
from torchvision.ops import sigmoid_focal_loss

from wsd_distill.engine import Trainer, setup_cfg
from wsd_distill.modeling.distill_losses import prediction_distill_loss
from wsd_distill.modeling.label_losses import asymmetric_loss, label_loss
from wsd_distill.modeling.student_head import CSRAClassifier, StudentHead
from wsd_distill.modeling.wsddn_tta import WSDDNWithTTA

from conftest import ROOT, make_input, tiny_cfg


def _logits_and_labels():
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(4, 6, generator=g) * 3).requires_grad_()
    labels = (torch.rand(4, 6, generator=g) < 0.3).float()
    return logits, labels


def test_asl_at_gamma_0_and_clip_0_is_the_bce():
    logits, labels = _logits_and_labels()
    asl = asymmetric_loss(logits, labels, gamma_neg=0, gamma_pos=0, clip=0)
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / 4
    torch.testing.assert_close(asl, bce)
    torch.testing.assert_close(label_loss(logits, labels, "bce"), bce)


def test_asl_at_gamma_2_and_clip_0_is_the_focal_loss_with_constant_weights():
    """The focal loss's value; its gradient is the BCE's, each term times its focal weight
    (the weights are constants of the backward pass, as the reference's)."""
    logits, labels = _logits_and_labels()
    asl = asymmetric_loss(logits, labels, gamma_neg=2, gamma_pos=2, clip=0)
    (asl_grad,) = torch.autograd.grad(asl, logits)
    focal = sigmoid_focal_loss(logits, labels, alpha=-1, gamma=2, reduction="sum") / 4
    torch.testing.assert_close(asl, focal)
    p = torch.sigmoid(logits.detach())
    p_t = p * labels + (1 - p) * (1 - labels)
    torch.testing.assert_close(asl_grad, (p - labels) * (1 - p_t) ** 2 / 4)


def test_asl_by_hand_with_its_defaults():
    """The reference's COCO settings (gamma- 4, gamma+ 0, clip 0.05). One positive at logit 0
    (p = 0.5): -log(0.5). One negative at logit 0: its probability shifted by the clip,
    1 - p_m = 0.55: -log(0.55) * 0.45^4."""
    loss = asymmetric_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))
    expected = -torch.log(torch.tensor(0.5)) - torch.log(torch.tensor(0.55)) * 0.45**4
    torch.testing.assert_close(loss, expected)


def test_mld_would_give_the_gradients_of_the_bce():
    """Why MLD (Yang et al., ICCV 2023: per class KL(p_T || p_S) + KL(1 - p_T || 1 - p_S),
    p_S = sigmoid(z / t), summed over classes, averaged over images) is no option: it is L_p'
    (BCE) minus the teacher's binary entropy, so its gradient is L_p''s (2 images x 3 classes)."""
    z = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]], requires_grad=True)
    p_t = torch.tensor([[0.9, 0.2, 0.5], [0.3, 0.99, 0.05]])
    log_p_s, log_q_s = F.logsigmoid(z / 5), F.logsigmoid(-z / 5)
    kl = p_t * (torch.log(p_t) - log_p_s) + (1 - p_t) * (torch.log(1 - p_t) - log_q_s)
    (mld_grad,) = torch.autograd.grad(kl.sum() / 2, z)
    (bce_grad,) = torch.autograd.grad(prediction_distill_loss(z, p_t, 1 / 5), z)
    torch.testing.assert_close(mld_grad, bce_grad)


def test_csra_is_mean_plus_lambda_max_of_normalized_scores():
    """A 1 x C x 2 x 2 map, K = 2: s_k = w_k . x / ||w_k|| at each position, logit =
    mean(s_k) + lambda * max(s_k)."""
    csra = CSRAClassifier(3, 2, lam=0.5)
    w = torch.tensor([[3.0, 0.0, 4.0], [0.0, 1.0, 0.0]])  # norms 5 and 1
    csra.head.weight.data = w.view(2, 3, 1, 1)
    x = torch.arange(12, dtype=torch.float32).view(1, 3, 2, 2)
    scores = torch.einsum("kc,chw->khw", w, x[0]).flatten(1) / torch.tensor([[5.0], [1.0]])
    expected = scores.mean(1) + 0.5 * scores.max(1).values
    torch.testing.assert_close(csra(x), expected[None])


def test_csra_student_classifies_the_map_and_distils_its_pooled_rois():
    """A "csra" head hands the classifier the map, and L_f the RoIs pooled as the "pool" head
    does ([N, C]); every loss reaches the backbone and the classifier."""
    head = StudentHead(ShapeSpec(channels=8, stride=4), kind="csra")
    feature = torch.randn(2, 8, 6, 6)
    assert head(feature) is feature
    boxes = [torch.tensor([[0.0, 0, 24, 24]]), torch.tensor([[4.0, 4, 12, 20]])]
    rois = head.forward_rois(feature, [Boxes(b) for b in boxes])
    torch.testing.assert_close(rois[0], feature[0].mean((1, 2)))
    assert rois.shape == (2, 8)

    cfg = setup_cfg(
        os.path.join(ROOT, "configs", "Synthetic", "S-Cls.yaml"),
        ["MODEL.STUDENT.HEAD", "csra", "DATASETS.TRAIN", (), "DATASETS.TEST", ()],
    )
    student = build_model(cfg)
    assert isinstance(student.classifier, CSRAClassifier)
    # by hand, class 0 of weight (2, 0, ...) on two positions of channel 0 at 1 and 3: scores
    # w.x / |w| = 1 and 3, logit mean 2 + lambda 0.1 (the reference's) * max 3 = 2.3
    classifier = student.classifier
    with torch.no_grad():
        classifier.head.weight.zero_()
        classifier.head.weight[0, 0] = 2.0
    channels = classifier.head.weight.shape[1]
    feature = torch.zeros(1, channels, 1, 2)
    feature[0, 0, 0] = torch.tensor([1.0, 3.0])
    assert classifier(feature)[0, 0].item() == pytest.approx(2.3)
    out = student.eval()([{"image": torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)}])
    assert out[0]["image_scores"].shape == (12,)


def test_an_unknown_loss_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="MODEL.STUDENT.LABEL_LOSS"):
        setup_cfg(
            os.path.join(ROOT, "configs", "Synthetic", "S-Cls.yaml"),
            ["MODEL.STUDENT.LABEL_LOSS", "kl"],
        )


def _tta_teacher(refine_iters=0, sizes=(48, 80), flip=True):

    cfg = tiny_cfg(refine_iters=refine_iters)
    cfg.TEST.AUG.MIN_SIZES, cfg.TEST.AUG.MAX_SIZE, cfg.TEST.AUG.FLIP = sizes, 1000, flip
    torch.manual_seed(0)
    return cfg, build_model(cfg).eval()


def _hand_variants(x):
    """The variants of ``_tta_teacher``'s TEST.AUG made by hand for a 64 x 80 input: the image
    resized to each shortest side (48, 80), and mirrored with its boxes mirrored."""
    image = x["image"].permute(1, 2, 0).numpy()
    boxes = x["proposals"].proposal_boxes.tensor.numpy()
    variants = []
    for side, width in ((48, 60), (80, 100)):
        resize = T.ResizeTransform(64, 80, side, width)
        resized, resized_boxes = resize.apply_image(image), resize.apply_box(boxes)
        mirrored = resized[:, ::-1].copy()
        mirrored_boxes = resized_boxes.copy()
        mirrored_boxes[:, [0, 2]] = width - resized_boxes[:, [2, 0]]
        for img, b in ((resized, resized_boxes), (mirrored, mirrored_boxes)):
            p = Instances(img.shape[:2])
            p.proposal_boxes = Boxes(torch.as_tensor(b, dtype=torch.float32))
            p.objectness_logits = x["proposals"].objectness_logits
            variants.append(
                {"image": torch.as_tensor(img.transpose(2, 0, 1).copy()), "proposals": p}
            )
    return variants


@pytest.mark.parametrize("refine_iters", [0, 1])
def test_tta_averages_exactly_the_rescaled_and_flipped_variants(refine_iters):
    """TTA's image scores are the mean of the hand-made variants', its detections come from the
    mean of their detection scores on the input's proposals."""

    cfg, model = _tta_teacher(refine_iters)
    x = make_input(12, size=(64, 80))
    image_scores, detection_scores = [], []
    with torch.no_grad():
        for variant in _hand_variants(x):
            out = model.teacher_outputs([variant])
            image_scores.append(out["image_scores"][0])
            detection_scores.append(model.detection_scores(out))
        tta = WSDDNWithTTA(cfg, model)([x])[0]
        plain = model([x])[0]
    torch.testing.assert_close(tta["image_scores"], torch.stack(image_scores).mean(0))
    assert not torch.allclose(tta["image_scores"], plain["image_scores"])
    top = torch.stack(detection_scores).mean(0).max(0)  # each class's best region
    found = tta["class_top_regions"]
    torch.testing.assert_close(found.scores, top.values)
    expected_boxes = x["proposals"].proposal_boxes.tensor[top.indices]
    expected_boxes = torch.minimum(expected_boxes, torch.tensor([80.0, 64, 80, 64])) * 2
    torch.testing.assert_close(found.pred_boxes.tensor, expected_boxes)


def test_tta_at_the_input_size_without_flip_is_the_model():

    cfg, model = _tta_teacher(sizes=(64,), flip=False)
    x = make_input(12, size=(64, 80))
    with torch.no_grad():
        tta, plain = WSDDNWithTTA(cfg, model)([x])[0], model([x])[0]
    torch.testing.assert_close(tta["image_scores"], plain["image_scores"])
    torch.testing.assert_close(tta["instances"].scores, plain["instances"].scores)


def test_tta_is_refused_for_a_student():
    cfg = setup_cfg(
        os.path.join(ROOT, "configs", "Synthetic", "S-Cls.yaml"),
        ["DATASETS.TRAIN", (), "DATASETS.TEST", ()],
    )
    with pytest.raises(ValueError, match="TEST.AUG.ENABLED"):
        Trainer.test_with_TTA(cfg, build_model(cfg))
