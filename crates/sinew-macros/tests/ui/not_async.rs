#[sinew::client]
trait Users {
    #[get("/users/{id}")]
    fn get_user(&self, id: u64) -> Result<String, sinew::Error>;
}
fn main() {}
