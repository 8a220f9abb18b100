import jax
import jax.numpy as jnp
import pytest

from sparsebnn import nets


def test_mlp_shapes_and_groups():
    net = nets.mlp([5, 7, 3, 2])
    params = net.init(jax.random.PRNGKey(0))
    assert net.apply(params, jnp.ones((4, 5))).shape == (4, 2)
    assert [l.prunable for l in net.layers] == [True, True, False]
    g = nets.node_groups(params, net.layers[0])
    assert g.shape == (7, 6)
    assert jnp.allclose(g[3, :5], params["dense_0"]["w"][:, 3])
    assert nets.n_params(params) == 5 * 7 + 7 + 7 * 3 + 3 + 3 * 2 + 2


def test_zeroed_node_is_silent():
    net = nets.mlp([3, 4, 2])
    params = net.init(jax.random.PRNGKey(1))
    x = jax.random.normal(jax.random.PRNGKey(2), (8, 3))
    mask = jnp.array([1.0, 0.0, 1.0, 1.0])
    masked = nets.scale_nodes(params, {"dense_0": mask})
    # Dropping node 1 by hand gives the same outputs.
    keep = jnp.array([0, 2, 3])
    small = {
        "dense_0": {"w": params["dense_0"]["w"][:, keep], "b": params["dense_0"]["b"][keep]},
        "dense_1": {"w": params["dense_1"]["w"][keep], "b": params["dense_1"]["b"]},
    }
    ref = nets.mlp([3, 3, 2]).apply(small, x)
    assert jnp.allclose(net.apply(masked, x), ref, atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="activation"):
        nets.mlp([3, 2], act="nope")
    with pytest.raises(ValueError, match="widths"):
        nets.mlp([3])
