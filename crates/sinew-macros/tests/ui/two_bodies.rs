#[sinew::client]
trait Users {
    #[post("/users")]
    async fn create(&self, #[body] a: String, #[body] b: String) -> Result<(), sinew::Error>;
}
fn main() {}
