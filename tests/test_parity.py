"""Parity with the iBOT authors' code: every tensor in ../shared/fixtures/reference."""

import numpy as np
import pytest
import torch

from pretrain import IBOTLoss, cosine_schedule, load_backbone, load_head
from tests.helpers.reference import load_reference, reference_path

TOL = 1e-4


def maxdiff(a, b):
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def teacher():
    return load_backbone(reference_path("official_checkpoint_A.pth"), key="teacher")[0]


@pytest.mark.parametrize("file", ["official_checkpoint_A.pth", "official_backbone_A.pth"])
def test_teacher_tokens_224_and_160(ref_outputs, file):
    backbone, info = load_backbone(reference_path(file))
    assert (info["embed_dim"], info["depth"], info["num_heads"], info["patch_size"]) == (192, 2, 3, 16)
    with torch.no_grad():
        assert maxdiff(backbone.forward_features(ref_outputs["images"]), ref_outputs["teacher_tokens"]) <= TOL
        small = backbone.forward_features(ref_outputs["images_small"])  # 10x10 grid: bicubic +0.1 rule
    assert small.shape == (2, 101, 192)
    assert maxdiff(small, ref_outputs["teacher_tokens_small"]) <= TOL


def test_last_selfattention_and_intermediate_layers(teacher, ref_outputs):
    with torch.no_grad():
        attn = teacher.get_last_selfattention(ref_outputs["images"])
        inter = torch.stack(teacher.get_intermediate_layers(ref_outputs["images"], n=2))  # (n, B, 1+N, D)
    assert maxdiff(attn, ref_outputs["teacher_last_selfattention"]) <= TOL
    assert maxdiff(inter, ref_outputs["teacher_intermediate_2"]) <= TOL
    assert torch.allclose(attn.sum(-1), torch.ones(2, 3, 197), atol=1e-5)


def test_student_masked_tokens(ref_outputs):
    student, info = load_backbone(reference_path("official_checkpoint_A.pth"), key="student")
    assert info["key"] == "student" and student.masked_embed is not None
    with torch.no_grad():
        out = student.forward_features(ref_outputs["images"], masks=ref_outputs["mask"])
        unmasked = student.forward_features(ref_outputs["images"])
    assert maxdiff(out, ref_outputs["student_masked_tokens"]) <= TOL
    assert maxdiff(unmasked, ref_outputs["student_masked_tokens"]) > 1e-2  # the mask matters


@pytest.mark.parametrize("key,tokens", [("teacher", "teacher_tokens"), ("student", "student_masked_tokens")])
def test_head_outputs(ref_outputs, key, tokens):
    head, info = load_head(reference_path("official_checkpoint_A.pth"), key=key)
    assert info["shared_head"] and info["out_dim"] == 256 and info["bottleneck_dim"] == 64
    with torch.no_grad():
        cls, patch = head(ref_outputs[tokens])
    assert maxdiff(cls, ref_outputs[f"{key}_head_cls"]) <= TOL
    assert maxdiff(patch, ref_outputs[f"{key}_head_patch"]) <= TOL


def _loss_from_case(c):
    return IBOTLoss(
        out_dim=c["student_cls"].shape[1],
        patch_out_dim=c["student_patch"].shape[-1],
        ngcrops=c["ngcrops"],
        nlcrops=c["nlcrops"],
        warmup_teacher_temp=c["warmup_teacher_temp"],
        teacher_temp=c["teacher_temp"],
        warmup_teacher_temp2=c["warmup_teacher_patch_temp"],
        teacher_temp2=c["teacher_patch_temp"],
        warmup_teacher_temp_epochs=c["warmup_teacher_temp_epochs"],
        nepochs=c["epochs"],
        student_temp=c["student_temp"],
        center_momentum=c["center_momentum"],
        center_momentum2=c["center_momentum"],
        lambda1=c["lambda1"],
        lambda2=c["lambda2"],
        mim_start_epoch=c["mim_start_epoch"],
    )


@pytest.mark.parametrize("case", [0, 1, 2])
def test_loss_cases(case):
    c = load_reference("loss_cases_A.pt")[case]
    loss = _loss_from_case(c)
    loss.center.copy_(c["center_before"])
    loss.center2.copy_(c["center2_before"])
    np.testing.assert_allclose(loss.teacher_temp_schedule, np.asarray(c["teacher_temp_schedule"]), atol=1e-12)
    np.testing.assert_allclose(loss.teacher_temp2_schedule, np.asarray(c["teacher_patch_temp_schedule"]), atol=1e-12)
    out = loss(
        (c["student_cls"], c["student_patch"]),
        (c["teacher_cls"], c["teacher_patch"]),
        c["student_local_cls"],
        list(c["masks"]),
        c["epoch"],
    )
    for mine, theirs in (("cls", "loss_cls"), ("patch", "loss_patch"), ("loss", "loss")):
        assert out[mine].item() == pytest.approx(c[theirs].item(), rel=1e-5)
    assert maxdiff(loss.center, c["center_after"]) <= 1e-6
    assert maxdiff(loss.center2, c["center2_after"]) <= 1e-6


def test_schedules():
    cases = load_reference("schedules_A.json")
    assert len(cases) == 4
    for case in cases:
        values = np.asarray(case.pop("values"))
        np.testing.assert_allclose(cosine_schedule(**case), values, rtol=0, atol=1e-12)
