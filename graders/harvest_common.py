"""Runs INSIDE the sandbox kernel, ahead of each assignment's harvest.py (Assignment.harvest_source
puts this text first, so its names are the harvest's own): what the harvests share."""
import torch as _torch


def pretrained(builder, weights):
    """`builder(weights=weights)` (say models.vgg16 and VGG16_Weights.IMAGENET1K_V1), the checkpoint
    read by torchvision's own weights API from $TORCH_HOME, without the random initialisation that
    the checkpoint then overwrites: the network is built on the meta device and the checkpoint's
    tensors become its parameters. VGG16 on one thread: 0.24 s instead of 2-4 s; ResNet-18: 27 ms
    instead of 100 ms. Only for builders whose `weights=` sets nothing but the class count
    (resnet, vgg, alexnet; inception_v3 also turns on transform_input, and skips its own init)."""
    with _torch.device("meta"):
        network = builder(weights=None, num_classes=len(weights.meta["categories"]))
    network.load_state_dict(weights.get_state_dict(progress=False, check_hash=True), assign=True)
    unset = [name for name, tensor in [*network.named_parameters(), *network.named_buffers()] if tensor.is_meta]
    if unset:
        raise RuntimeError(f"{builder.__name__}: {', '.join(unset[:3])} not in the checkpoint")
    return network
