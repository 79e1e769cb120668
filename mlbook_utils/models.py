"""Networks shared by the chapters.

``conv4_embedding`` is the four-block convolutional embedding of Vinyals et al. (2016) and Snell
et al. (2017): each block is a 3x3 convolution with 64 filters, batch normalisation, ReLU and 2x2
max pooling. On 28x28 Omniglot images the four poolings leave a 1x1x64 map, so the embedding is
64-dimensional. Keras is imported only when a network is built.
"""

from __future__ import annotations


def conv_block(x, filters: int, name: str):
    """Conv2D 3x3 (same) -> BatchNorm (momentum 0.9, epsilon 1e-5) -> ReLU -> MaxPool 2x2."""
    from keras import layers

    x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
    # momentum 0.9 / epsilon 1e-5: PyTorch's defaults, which the reference implementations used.
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    return layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def conv4_embedding(input_shape=(28, 28, 1), filters: int = 64, name: str = "conv4_embedding",
                    out_filters: int | None = None):
    """A ``keras.Model`` mapping images of ``input_shape`` to flat embeddings.

    For 28x28 inputs the output has ``filters`` dimensions (64 by default); for 84x84 inputs
    (mini-ImageNet) it has 5 * 5 * filters. ``out_filters`` (default ``filters``) sets the last
    block's width, e.g. 128 for a Gaussian prototypical network's 64 embedding + 64 precision
    channels.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i in range(4):
        width = out_filters if (i == 3 and out_filters) else filters
        x = conv_block(x, width, name=f"block{i + 1}")
    outputs = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, outputs, name=name)
