//! `POST /predict`: an uploaded image through a model's image classification pipeline.

use std::path::Path;

use serde_json::{Value, json};

use super::common::{
    DOG_JPG, ImageReference, Lcg, RefPrediction, Reply, Repo, Server, StatusCode, assert_close,
    example_model, png, reference_image_predictions, test_model,
};

/// `(label, probability)` of each prediction of a successful `/predict` response, checking
/// the tutorial's response shape on the way.
fn predictions(body: &Value) -> Vec<(String, f64)> {
    assert_eq!(body["success"], true, "{body}");
    body["predictions"]
        .as_array()
        .unwrap_or_else(|| panic!("no predictions in {body}"))
        .iter()
        .map(|p| {
            let label = p["label"]
                .as_str()
                .unwrap_or_else(|| panic!("no label in {p}"));
            let probability = p["probability"]
                .as_f64()
                .unwrap_or_else(|| panic!("no probability in {p}"));
            (label.to_string(), probability)
        })
        .collect()
}

fn assert_descending(got: &[(String, f64)]) {
    assert!(
        got.windows(2).all(|w| w[0].1 >= w[1].1),
        "probabilities are not in descending order: {got:?}"
    );
}

/// The label the server gives a reference prediction: its line in the labels file, else its
/// index.
fn label_of(p: &RefPrediction) -> String {
    p.label.clone().unwrap_or_else(|| p.index.to_string())
}

#[tokio::test]
async fn efficientnet_says_the_tutorial_dog_is_a_beagle_as_onnx_runtime_does() {
    let model_dir = example_model("efficientnet_lite0");
    let server = Server::start(Repo::new().with_model_dir(&model_dir)).await;
    let dog = std::fs::read(DOG_JPG).unwrap_or_else(|e| panic!("cannot read {DOG_JPG}: {e}"));

    let body = server.post_image("/predict", dog).await.ok();

    let got = predictions(&body);
    assert_eq!(got.len(), 5, "{body}");
    assert_eq!(got[0].0, "beagle", "{body}");
    assert_descending(&got);
    let reference = reference_image_predictions(ImageReference {
        model: &model_dir.join("1/model.onnx"),
        image: Path::new(DOG_JPG),
        size: [224, 224],
        layout: "NCHW",
        preset: "tf",
        top_k: 5,
        labels: Some(&model_dir.join("labels.txt")),
    })
    .await;
    // Pillow and the server resize slightly differently: the same winner, close probabilities.
    assert_eq!(got[0].0, label_of(&reference[0]), "reference {reference:?}");
    assert!(
        (got[0].1 - reference[0].probability).abs() < 0.03,
        "server {got:?}, reference {reference:?}"
    );
}

/// Serves `file` as model `m` with a torch-normalized 32×32 pipeline in `layout` (top 3),
/// uploads a noisy gradient PNG of `width`×`height` and returns the server's predictions and
/// the reference's.
async fn classify_png(
    file: &str,
    layout: &str,
    [width, height]: [u32; 2],
) -> (Vec<(String, f64)>, Vec<RefPrediction>) {
    let config = format!(
        "pipeline: {{kind: image_classification, size: [32, 32], layout: {layout}, \
         normalize: torch, softmax: true, top_k: 3}}\n"
    );
    let server = Server::start(
        Repo::new()
            .with_model("m", 1, file)
            .with_config("m", &config),
    )
    .await;
    let noise = Lcg::new(21).bytes((width * height * 3) as usize);
    let image = png(width, height, |x, y| {
        let i = ((y * width + x) * 3) as usize;
        let base = [
            x * 255 / width,
            y * 255 / height,
            (x + y) * 127 / (width + height),
        ];
        std::array::from_fn(|c| (base[c] as u8).saturating_add(noise[i + c] % 24))
    });
    let dir = tempfile::TempDir::new().expect("create a temporary directory");
    let path = dir.path().join("upload.png");
    std::fs::write(&path, &image).expect("write the test image");

    let body = server.post_image("/predict?model=m", image).await.ok();

    let got = predictions(&body);
    assert_eq!(got.len(), 3, "{body}");
    assert_descending(&got);
    let reference = reference_image_predictions(ImageReference {
        model: &test_model(file),
        image: &path,
        size: [32, 32],
        layout,
        preset: "torch",
        top_k: 3,
        labels: None,
    })
    .await;
    (got, reference)
}

/// Without resizing, the server computes what onnxruntime does: the same top 3, the same
/// probabilities.
async fn assert_same_top_3(file: &str, layout: &str) {
    let (got, reference) = classify_png(file, layout, [32, 32]).await;
    let got: Vec<Value> = got.iter().map(|(l, p)| json!([l, p])).collect();
    let want: Vec<Value> = reference
        .iter()
        .map(|p| json!([label_of(p), p.probability]))
        .collect();
    assert_close(&json!(got), &json!(want), 1e-4, "predictions");
}

#[tokio::test]
async fn nchw_pipeline_matches_onnx_runtime_on_an_image_of_the_model_size() {
    assert_same_top_3("image_nchw.onnx", "NCHW").await;
}

#[tokio::test]
async fn nhwc_pipeline_matches_onnx_runtime_on_an_image_of_the_model_size() {
    assert_same_top_3("image_nhwc.onnx", "NHWC").await;
}

#[tokio::test]
async fn resized_uploads_stay_close_to_pillow_bilinear() {
    let (got, reference) = classify_png("image_nhwc.onnx", "NHWC", [80, 64]).await;
    assert_eq!(
        got[0].0,
        label_of(&reference[0]),
        "server {got:?}, reference {reference:?}"
    );
    assert!(
        (got[0].1 - reference[0].probability).abs() < 0.03,
        "server {got:?}, reference {reference:?}"
    );
}

#[tokio::test]
async fn the_query_chooses_the_model_the_version_and_top_k() {
    let pipeline =
        "pipeline: {kind: image_classification, size: [32, 32], normalize: torch, top_k: 4}\n";
    let repo = Repo::new()
        .with_model("nchw", 1, "image_nchw.onnx")
        .with_model("nchw", 2, "image_nchw.onnx")
        .with_config("nchw", &format!("version_policy: all\n{pipeline}"))
        .with_model("nhwc", 1, "image_nhwc.onnx")
        .with_config(
            "nhwc",
            &pipeline.replace("normalize", "layout: NHWC, normalize"),
        )
        .with_model("plain", 1, "tiny.onnx");
    let server = Server::start(repo).await;
    let image = png(40, 30, |x, y| [(x * 6) as u8, (y * 8) as u8, 128]);

    let message = failure(
        &server.post_image("/predict", image.clone()).await,
        StatusCode::BAD_REQUEST,
    );
    assert!(
        message.contains("nchw") && message.contains("nhwc"),
        "{message}"
    );

    for query in ["?model=nchw", "?model=nchw&version=1", "?model=nhwc"] {
        let body = server
            .post_image(&format!("/predict{query}"), image.clone())
            .await
            .ok();
        assert_eq!(predictions(&body).len(), 4, "{query}: {body}");
    }
    let body = server
        .post_image("/predict?model=nhwc&top_k=2", image.clone())
        .await
        .ok();
    assert_eq!(predictions(&body).len(), 2, "{body}");

    for (query, status) in [
        ("?model=nope", StatusCode::NOT_FOUND),
        ("?model=nchw&version=9", StatusCode::NOT_FOUND),
        ("?model=nchw&version=x", StatusCode::BAD_REQUEST),
        ("?model=nchw&top_k=0", StatusCode::BAD_REQUEST),
        ("?model=plain", StatusCode::BAD_REQUEST),
    ] {
        failure(
            &server
                .post_image(&format!("/predict{query}"), image.clone())
                .await,
            status,
        );
    }
}

async fn serve_efficientnet() -> Server {
    Server::start(Repo::new().with_model_dir(&example_model("efficientnet_lite0"))).await
}

/// Asserts the tutorial's failure shape, `{"success": false, "error": "..."}`, with `status`.
fn failure(reply: &Reply, status: StatusCode) -> String {
    let message = reply.error(status);
    assert_eq!(reply.json()["success"], false, "{}", reply.text());
    message
}

#[tokio::test]
async fn a_form_without_an_image_field_is_400() {
    let server = serve_efficientnet().await;
    let form = reqwest::multipart::Form::new().text("photo", "not here");
    let reply = server.post_form("/predict", form).await;
    let message = failure(&reply, StatusCode::BAD_REQUEST);
    assert!(message.contains("image"), "{message}");
}

#[tokio::test]
async fn a_body_that_is_not_multipart_is_400() {
    let server = serve_efficientnet().await;
    let reply = server
        .post_json("/predict", &json!({"image": "dog.jpg"}))
        .await;
    let message = failure(&reply, StatusCode::BAD_REQUEST);
    assert!(message.contains("multipart"), "{message}");
}

#[tokio::test]
async fn undecodable_image_bytes_are_400_naming_the_format_problem() {
    let server = serve_efficientnet().await;
    let garbage = Lcg::new(22).bytes(2048);
    let reply = server.post_image("/predict", garbage).await;
    let message = failure(&reply, StatusCode::BAD_REQUEST);
    assert!(message.contains("format"), "{message}");
}
