#[sinew::client]
trait Users {
    #[get("/users/{id}")]
    async fn get_user(&self, user_id: u64) -> Result<String, sinew::Error>;
}
fn main() {}
