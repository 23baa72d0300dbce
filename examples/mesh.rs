//! The main job (work in progress): grows into the full mesh demo as the layers land.

fn main() {
    println!("sinew mesh: the demo is being assembled; see README.md");
}
