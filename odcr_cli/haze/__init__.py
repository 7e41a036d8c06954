"""The default method, in one folder: a scattering network that corrects the dark channel prior's
transmission, and J = (I - A) / t + A computed at full resolution (docs/scattering.md).

Read in this order:

* ``constants``    every number of the method, once (patch, omega, t floor, side, margin...);
* ``scattering``   the model I = J t + A (1 - t) and its inverse, for numpy and torch alike;
* ``prior``        the dark channel prior in numpy (``prior_torch``: the same in torch, for training);
* ``guided``       the guided filter for any array type (``filters``: numpy's box mean, the guided
                   filter and the carrying of t up to the photo);
* ``transmission`` how the network's output becomes t (a logit residual on the prior's t) and the
                   strength rule (``transmission_torch``: the same in torch);
* ``network_input`` what the network sees: the small copy, its mirrored margin, [-1, 1], the multiple;
* ``readout``      a network's named outputs -> t and the airlight; t carried up, J inverted;
* ``inversion``    that inversion without amplifying the colour noise of flat regions;
* ``pipeline``     the whole path of one photo (shrink, frame, run, estimate, carry up, invert), one
                   function that every caller runs with its own ``run_network``;
* ``dcp``          the classical dehazer (``--method dcp``) on the same pieces.

Below ``core`` (the networks and losses import it) and above ``errors``; it imports nothing else
of the package. Only the ``*_torch`` modules import torch, so the ONNX path stays torch-free.
Nothing is imported here: the command line reads ``constants`` before numpy is loaded."""
