#[sinew::client]
trait Users {
    #[get("/users/{id}")]
    async fn get_user(&self, id: u64) -> String;
}
fn main() {}
