"""Solution of docs/exercises/03-made-mask.md: the masks of a one-hidden-layer MADE."""

import torch


def made_masks(dim, hidden_degrees):
    """The masks of a MADE on inputs of degrees 1..dim through hidden units of degrees ``hidden_degrees``:
    ``[hidden, dim]`` (unit k reads input i iff m(k) ≥ i) and ``[dim, hidden]`` (output i reads unit k iff
    i > m(k): strictly, so output i never depends on input i), as float tensors of 0 and 1."""
    inputs = torch.arange(1, dim + 1)
    hidden = (hidden_degrees[:, None] >= inputs[None, :]).float()
    output = (inputs[:, None] > hidden_degrees[None, :]).float()
    return hidden, output


if __name__ == "__main__":
    print("made_masks(3, [1, 2, 1, 2]) =", made_masks(3, torch.tensor([1, 2, 1, 2])))
    print("the MADE's layer is the notebook's: grade it there with flowlab.grade('made_mask', MaskedAffine)")
