//! The WIT bindings of the `pgsink:converter` world, generated once here.
wit_bindgen::generate!({
    path: "../wit/v0.2",
    world: "converter",
    pub_export_macro: true,
    default_bindings_module: "pgsink_guest::bindings",
});
