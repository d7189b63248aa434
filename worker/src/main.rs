//! Binary entry for trunk (`data-type="worker"`): starts the worker runtime.
fn main() {
    sepsis_worker::start();
}
