"""Frozen features for ranking: the source weights are used whole, the source head only if present."""

import numpy as np
import pytest
import torch

from trainables.data import load_digits_task
from trainables.features import extract_features
from trainables.models import create_backbone
from trainables.transforms import data_config, eval_transform


@pytest.fixture(scope="module")
def split():
    return load_digits_task([0, 1, 2], train_per_class=4, val_per_class=1, seed=0).train


@pytest.mark.parametrize("backbone", ["test_resnet", "test_vit"])
def test_features_and_logits_are_those_of_the_source_model(split, backbone):
    torch.manual_seed(0)
    source = create_backbone(backbone, 7).eval()  # a source task of 7 classes
    extracted = extract_features(backbone, source.state_dict(), split, image_size=32, device=torch.device("cpu"))

    transform = eval_transform(data_config(source, 32))
    images = torch.stack([transform(split.image(i)) for i in range(len(split))])
    with torch.no_grad():
        feature_map = source.forward_features(images)
        expected_features = source.forward_head(feature_map, pre_logits=True).numpy()
        expected_logits = source(images).numpy()
    assert extracted.features.shape == (len(split), source.num_features)
    np.testing.assert_allclose(extracted.features, expected_features, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(extracted.source_logits, expected_logits, rtol=1e-4, atol=1e-5)


def test_weights_without_a_classifier_give_features_only(split):
    headless = create_backbone("test_resnet", 0).state_dict()
    extracted = extract_features("test_resnet", headless, split, image_size=32, device=torch.device("cpu"))
    assert extracted.source_logits is None
    assert extracted.features.shape[0] == len(split) and np.isfinite(extracted.features).all()


def test_weights_of_another_architecture_are_refused(split):
    with pytest.raises(ValueError, match="source"):
        extract_features("test_resnet", create_backbone("test_vit", 3).state_dict(), split, image_size=32)
