//! Compile-fail tests of `#[sinew::client]`: the misuse a user will try gets
//! a clear error pointing at the right place.

#[test]
fn misuse_is_a_clear_compile_error() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
