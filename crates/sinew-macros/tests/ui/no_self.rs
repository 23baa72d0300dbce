#[sinew::client]
trait Users {
    #[get("/users/{id}")]
    async fn get_user(id: u64) -> Result<String, sinew::Error>;
}
fn main() {}
