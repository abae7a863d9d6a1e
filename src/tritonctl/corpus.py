"""A fixed, varied evaluation corpus of sentences, shipped with the package.

The text-embedding build checks its INT8 variant against FP32 on it, and load tests and
benchmarks reuse it as realistic traffic. It mixes short and long sentences, questions,
technical prose, code-like strings, numbers, non-English scripts and emoji, so that every
padding bucket up to 128 tokens sees some traffic. Change it only deliberately: the build
report's accuracy figures and the drift reference profile are computed over it.
"""

from __future__ import annotations

_SHORT = [
    "Hello.",
    "Yes",
    "No way!",
    "Thanks a lot.",
    "Good morning, everyone.",
    "The cat sleeps.",
    "It is raining again.",
    "Coffee first.",
    "See you tomorrow.",
    "Deploy failed.",
    "Latency is up.",
    "Ship it.",
    "I love this song.",
    "The train is late.",
    "Water boils at 100 °C.",
    "OK",
    "Dogs bark.",
    "Read the manual.",
    "Where is the station?",
    "Happy birthday!",
]

_QUESTIONS = [
    "How do I reset my password if I no longer have access to my email?",
    "What is the difference between a process and a thread?",
    "Can you recommend a good Italian restaurant near the city centre?",
    "Why does my sourdough bread come out so dense?",
    "Is it safe to run the database migration while the service is live?",
    "How many moons does Jupiter have?",
    "What time does the pharmacy close on Sundays?",
    "Which GPU should I buy for training small language models at home?",
    "Does the warranty cover water damage?",
    "How can I make my Python code run faster without rewriting it in C?",
    "Who wrote the novel One Hundred Years of Solitude?",
    "What are the symptoms of vitamin D deficiency?",
    "How does the dynamic batcher decide when to send a batch to the model?",
    "When is the next full moon?",
    "Should I use gRPC or HTTP for low-latency inference calls?",
    "Why is the sky blue during the day and red at sunset?",
    "What does a 503 Service Unavailable error mean?",
    "How do vaccines train the immune system?",
    "Can I bring my dog on the train?",
    "What is the capital of Australia?",
    "How long should I let the steak rest after grilling it?",
    "Is there a way to undo the last git commit without losing the changes?",
    "What are the main causes of inflation?",
    "Where can I find the quarterly earnings report?",
    "How do I convert a PyTorch model to ONNX?",
]

_EVERYDAY = [
    "The children played in the park until the street lights came on.",
    "She forgot her umbrella on the bus and got soaked on the way home.",
    "We are planning a trip to the mountains next summer.",
    "My grandmother makes the best apple pie in the whole village.",
    "The meeting has been moved to Thursday afternoon.",
    "He ran the marathon in just under four hours.",
    "The new library opens to the public next Monday.",
    "I can't find my keys anywhere; I think I left them at the office.",
    "The museum is free on the first Sunday of every month.",
    "Our flight was delayed by three hours because of the storm.",
    "The tomatoes in the garden are finally ripe.",
    "They adopted a small grey kitten from the shelter.",
    "The concert was sold out within ten minutes.",
    "Please remember to water the plants while I'm away.",
    "The restaurant changed its menu and the prices went up.",
    "A heavy fog covered the harbour this morning.",
    "The kids built a snowman with a carrot nose.",
    "I started learning the piano at the age of forty.",
    "The bakery on the corner sells fresh croissants every morning.",
    "The football match ended in a goalless draw.",
    "My phone battery dies before lunch these days.",
    "The hotel room had a beautiful view of the lake.",
    "She painted the kitchen a bright shade of yellow.",
    "The bus driver waited for the old man to sit down.",
    "We watched the sunset from the top of the hill.",
    "The neighbours are renovating their house again.",
    "He always takes his coffee black with no sugar.",
    "The river flooded the fields after a week of rain.",
    "Tickets for the exhibition can be booked online.",
    "The puppy chewed through the charging cable.",
]

_TECHNICAL = [
    "The Kubernetes horizontal pod autoscaler scales replicas based on observed metrics.",
    "Quantization maps floating-point weights to 8-bit integers to reduce memory and latency.",
    "A transformer encoder applies multi-head self-attention followed by a feed-forward network.",
    "The response cache returns a stored result when an identical request arrives again.",
    "Use a readiness probe so that traffic only reaches pods whose models have loaded.",
    "Mean pooling averages token embeddings while ignoring the padding positions.",
    "The garbage collector pauses were causing tail latency spikes at the 99th percentile.",
    "TLS termination at the ingress offloads encryption from the application servers.",
    "Gradient checkpointing trades compute for memory during backpropagation.",
    "The database uses a B-tree index to speed up range queries on the timestamp column.",
    "An L4 load balancer cannot spread requests of one long-lived HTTP/2 connection across pods.",
    "Cosine similarity measures the angle between two vectors regardless of their length.",
    "The operator reconciles the desired state declared in the custom resource.",
    "Layer normalization rescales activations using the mean and variance of each token.",
    "Prometheus scrapes the metrics endpoint every fifteen seconds.",
    "Shared memory lets the client pass large tensors to the server without copying them.",
    "The CPU throttling was caused by a container limit of two cores.",
    "A content delivery network caches static assets close to the users.",
    "Static quantization needs a calibration data set to estimate activation ranges.",
    "The service mesh injects a sidecar proxy into every pod.",
    "Eventual consistency means replicas converge once writes stop arriving.",
    "The compiler inlines small functions to avoid call overhead.",
    "The tokenizer splits rare words into subword units from a fixed vocabulary.",
    "Batching requests amortizes the fixed cost of each kernel launch on the GPU.",
    "A circuit breaker stops calling a failing dependency until it recovers.",
    "TensorRT builds an optimized engine for a specific GPU architecture.",
    "The memory leak was traced to an unbounded cache in the session handler.",
    "Retries with exponential backoff and jitter prevent thundering herds.",
    "Vector databases index embeddings for approximate nearest-neighbour search.",
    "The canary deployment routes five percent of the traffic to the new version.",
]

_CODE = [
    "def add(a: int, b: int) -> int: return a + b",
    "SELECT name, COUNT(*) FROM users GROUP BY name HAVING COUNT(*) > 1;",
    "kubectl get pods -n triton -l app=inference -o wide",
    "for (int i = 0; i < n; ++i) { sum += x[i] * y[i]; }",
    "git rebase -i HEAD~3 && git push --force-with-lease",
    "curl -X POST localhost:8000/v2/models/text_embedding/infer -d @request.json",
    "import numpy as np; x = np.linspace(0, 1, 11)",
    "Error: ENOENT: no such file or directory, open '/etc/app/config.yaml'",
    'Traceback (most recent call last): File "main.py", line 3, in <module>',
    "docker run --rm -p 8000:8000 nvcr.io/nvidia/tritonserver:24.10-py3",
    "const result = await fetch(url, { method: 'GET' }).then(r => r.json());",
    "max_batch_size: 64 dynamic_batching { max_queue_delay_microseconds: 500 }",
    "pip install 'tritonclient[all]>=2.51,<2.70'",
    "SEGFAULT at 0x7ffd5e8c3a10 in libcuda.so.1",
    '{"id": 42, "status": "ok", "items": [1, 2, 3]}',
    '<div class="header"><h1>Welcome</h1></div>',
    'fn main() { println!("Hello, world!"); }',
    "https://example.com/search?q=sentence+embeddings&page=2",
    "user@example.org",
    "export CUDA_VISIBLE_DEVICES=0,1",
]

_NUMBERS = [
    "The invoice total is $1,249.99 including 20% VAT.",
    "Call me at +44 20 7946 0958 after 6 pm.",
    "The population grew from 8.2 million in 2001 to 9.7 million in 2021.",
    "Order #A-10293 shipped on 2024-03-15 at 14:32 UTC.",
    "p99 latency dropped from 182 ms to 47 ms after the change.",
    "3.14159 26535 89793 23846",
    "The recipe needs 250 g of flour, 2 eggs and 120 ml of milk.",
    "Version 2.51.0 fixed 17 bugs and added 4 features.",
    "Temperatures will range between -5 and 3 degrees tomorrow.",
    "1 2 3 4 5 6 7 8 9 10",
    "The stock fell 4.7% to close at 312.45.",
    "Room 404 is on the 4th floor, next to room 405.",
    "42",
    "The car does 0 to 100 km/h in 6.8 seconds.",
    "We processed 1.3e6 requests per second at peak.",
]

_NON_ENGLISH = [
    "Le chat dort sur le canapé depuis ce matin.",
    "¿Dónde está la estación de tren más cercana?",
    "Ich habe heute keine Zeit, vielleicht morgen.",
    "La pizza napoletana è patrimonio dell'UNESCO.",
    "O tempo está ótimo para ir à praia hoje.",
    "Het regent al de hele week in Amsterdam.",
    "Jag älskar att läsa böcker på vintern.",
    "Dziękuję bardzo za pomoc.",
    "Это очень интересная книга о истории России.",
    "Слава Україні!",
    "東京は日本の首都です。",
    "我今天很忙，明天再说吧。",
    "机器学习模型需要大量的数据。",
    "오늘 날씨가 정말 좋네요.",
    "مرحبا، كيف حالك اليوم؟",
    "שלום, מה שלומך?",
    "नमस्ते, आप कैसे हैं?",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "Merhaba, bugün nasılsın?",
    "Xin chào, bạn khỏe không?",
    "สวัสดีครับ ยินดีที่ได้รู้จัก",
    "Habari ya asubuhi, rafiki yangu.",
    "Hyvää huomenta kaikille!",
    "Köszönöm szépen a segítséget.",
    "Bonjour! Can we switch to English, s'il vous plaît?",
]

_EMOJI = [
    "I love pizza 🍕🍕🍕",
    "Great job, team! 🎉👏",
    "😀",
    "The deploy is green ✅ and latency is fine 🚀",
    "Feeling sad today 😢 but tomorrow will be better 🌈",
    "🔥🔥🔥 this release is amazing",
    "Rainy day ☔ stay home and read 📚",
    "❤️ from Paris 🇫🇷",
    "Cats > dogs? 🐱🐶 discuss",
    "Meeting at 3pm ⏰ don't be late!",
    "Our cluster is on fire 🔥🧯 please help",
    "👍",
    "Happy new year 🎆🥂 2025!",
    "Lunch? 🍣🍜🍱",
    "bug 🐛 found in prod 😱",
]

_LONG = [
    "After months of careful planning, the team finally migrated the entire payment platform "
    "to the new cluster over a single weekend, with only a few minutes of degraded service "
    "while the database replicas caught up with the primary.",
    "The committee reviewed more than three hundred applications from researchers across the "
    "continent and selected twelve projects that combine fundamental science with practical "
    "applications in medicine, agriculture and renewable energy.",
    "When you serve a sentence-embedding model behind an inference server, tokenize on the "
    "server side, pad to a small set of sequence lengths so that the dynamic batcher can join "
    "requests, and cache identical requests to avoid recomputing popular queries.",
    "The old lighthouse keeper climbed the narrow spiral staircase every evening to light the "
    "lamp, and for forty years not a single ship was lost on the rocks below the cliffs.",
    "Although the forecast promised sunshine for the whole weekend, a cold front arrived "
    "from the north on Saturday morning, bringing strong winds, heavy rain and even a brief "
    "hailstorm that sent the festival visitors running for cover.",
    "In the nineteenth century, the construction of railways transformed the economy of rural "
    "regions, allowing farmers to sell fresh produce in distant cities and bringing factory "
    "goods, newspapers and new ideas to villages that had been isolated for generations.",
    "If the readiness probe fails while the model is still loading, Kubernetes will keep the "
    "pod out of the service endpoints, but if the liveness probe fails too early the kubelet "
    "restarts the container and the model never finishes loading, which is why a startup "
    "probe with a generous failure threshold is recommended for large models.",
    "The novel follows three generations of a family living in a small fishing town, weaving "
    "together stories of love, loss, emigration and return, and it ends with the youngest "
    "daughter deciding to stay and rebuild the boatyard her grandfather founded.",
    "Customer reported that the mobile application crashes immediately after login on "
    "devices running the latest operating system update; the crash log points to a null "
    "pointer in the push notification handler introduced in release 4.2.1.",
    "Photosynthesis converts light energy into chemical energy: chlorophyll absorbs mostly "
    "blue and red light, water molecules are split to release oxygen, and the energy stored "
    "in ATP and NADPH is used to fix carbon dioxide into sugars in the Calvin cycle.",
    "Our quarterly results exceeded expectations, with revenue up eighteen percent year over "
    "year, operating margin improving by two points, and strong growth in the subscription "
    "business offsetting a slight decline in hardware sales.",
    "To make a proper risotto, toast the rice in butter until the grains turn translucent at "
    "the edges, deglaze with a splash of white wine, then add hot stock one ladle at a time, "
    "stirring constantly, until the rice is creamy but still has a little bite.",
    "Large language models are trained on vast amounts of text to predict the next token, "
    "and although this objective is simple, the resulting models can summarise documents, "
    "translate between languages, write code and answer questions with surprising fluency, "
    "while still making confident mistakes that users must learn to recognise.",
    "The hiking trail starts at the old mill, follows the river upstream through a beech "
    "forest, climbs steeply to a ridge with views over three valleys and returns along a "
    "gravel road past the monastery, for a total of about fourteen kilometres.",
    "Dear customer, we regret to inform you that your order could not be delivered because "
    "the address provided was incomplete; please log in to your account, update the "
    "delivery details and we will ship the parcel again free of charge.",
]

_SEARCH = [
    "cheap flights to lisbon in may",
    "best noise cancelling headphones 2024",
    "how to tie a tie",
    "python list comprehension example",
    "weather berlin tomorrow",
    "symptoms of flu vs covid",
    "triton inference server dynamic batching",
    "vegan chocolate cake recipe",
    "used cars under 10000",
    "nearest hospital open now",
    "onnx runtime int8 quantization accuracy",
    "how to learn spanish fast",
    "kubernetes pod crashloopbackoff",
    "what to watch tonight",
    "running shoes for flat feet",
    "sentence embeddings semantic search tutorial",
    "mortgage calculator",
    "why is my cat sneezing",
    "latency vs throughput",
    "buy concert tickets",
]

_PARAPHRASES = [
    "A man is playing a guitar on the street.",
    "Someone plays the guitar outside.",
    "A woman is slicing an onion in the kitchen.",
    "A person is cutting vegetables.",
    "The stock market crashed yesterday.",
    "Share prices fell sharply on Monday.",
    "The company announced record profits.",
    "The firm reported its best earnings ever.",
    "Two dogs are running through a field.",
    "A pair of dogs race across the grass.",
    "The plane landed safely despite the storm.",
    "Despite bad weather, the aircraft touched down without incident.",
    "I am very hungry.",
    "I could eat a horse.",
    "The server is overloaded.",
    "Too many requests are hitting the backend.",
    "She passed the exam with top marks.",
    "She failed the exam.",
    "The movie was boring.",
    "The film was incredibly exciting.",
]

_ODD = [
    "   leading and trailing spaces   ",
    "ALL CAPS SENTENCE SHOUTING AT THE READER",
    "no punctuation at all just words flowing on and on",
    "Mixed-case WoRdS aNd hy-phen-ated com-pounds",
    "?!?!",
    "...",
    "a",
    "The the the the the the the the",
    "Tabs\tand\nnewlines\ninside",
    "naïve café résumé coöperate façade",
    "C'est déjà l'été — n'est-ce pas ?",
    "«Quotes», “curly quotes” and ‘single ones’",
    "Math: ∑ᵢ xᵢ² ≤ ∞, ∀ε > 0 ∃δ",
    "Currency: € £ ¥ ₹ ₿",
    "supercalifragilisticexpialidocious",
]


def sentences() -> list[str]:
    """The evaluation corpus, in a fixed order (at least 200 sentences)."""
    return [
        *_SHORT,
        *_QUESTIONS,
        *_EVERYDAY,
        *_TECHNICAL,
        *_CODE,
        *_NUMBERS,
        *_NON_ENGLISH,
        *_EMOJI,
        *_LONG,
        *_SEARCH,
        *_PARAPHRASES,
        *_ODD,
    ]


_CALIBRATION = [
    "The weather report says it will be sunny all week.",
    "Please send me the slides before the meeting starts.",
    "What is the best way to learn a new programming language?",
    "A quick brown fox jumps over the lazy dog.",
    "Our servers handle thousands of requests every second.",
    "He bought a new bicycle and rode it to work.",
    "How far is the airport from the hotel?",
    "The orchestra played Beethoven's ninth symphony.",
    "Machine translation has improved a lot in recent years.",
    "The invoice is due at the end of the month.",
    "She studies marine biology at the university.",
    "Turn left at the second traffic light.",
    "np.mean(x, axis=0) returns the column means.",
    "Connection refused: is the service running on port 8001?",
    "The GPU memory usage peaked at 14 GB during training.",
    "Les enfants jouent dans le jardin.",
    "Wir treffen uns um acht Uhr am Bahnhof.",
    "今日はとても暑いです。",
    "Мы поедем на море летом.",
    "Can't wait for the weekend 🎉",
    "ok thanks",
    "Sorry, I missed your call.",
    "The committee will publish its decision next week after reviewing all the evidence "
    "submitted by both parties during the hearing.",
    "Backpressure in the message queue slowed down the downstream consumers considerably.",
    "Is this restaurant open for dinner on Mondays?",
    "The painting was sold at auction for two million dollars.",
    "Store the API key in a secret, not in the container image.",
    "Our app crashed twice this morning; the logs show an out-of-memory error.",
    "Birds migrate south when the days become shorter.",
    "The median household income rose by 3.2% last year.",
    "Why do cats purr?",
    "Reboot the router and try again.",
    "The hospital opened a new wing for children with a playground on the roof and a small "
    "library run by volunteers from the neighbourhood.",
    "When the load balancer marks a backend unhealthy, it stops sending new connections but "
    "lets the existing ones drain for up to thirty seconds before closing them.",
    "Le musée présente une exposition sur l'histoire de l'aviation jusqu'à la fin de l'année.",
    "La biblioteca municipal amplía su horario durante la época de exámenes.",
    "北京的秋天很美，天气凉爽，到处都是红叶。",
    "서울에서 부산까지 기차로 약 세 시간 걸립니다.",
    "Wow 😍😍 that view from the summit was worth every step 🏔️",
    "kubectl rollout status deployment/triton -n inference --timeout=120s",
    '{"model": "text_embedding", "inputs": [{"name": "TEXT", "shape": [1, 1]}]}',
    "Total: 3 items, 2 × €4.99 + 1 × €12.50 = €22.48",
    "yes",
    "Thank you!",
    "The researchers measured the temperature of the lake every hour for three years and "
    "found that the surface warmed twice as fast as the air above it, which surprised them "
    "because the lake is fed by cold mountain streams for most of the year.",
    "Do you deliver on weekends, and is there an extra charge for that?",
    "SELECT * FROM orders WHERE created_at > NOW() - INTERVAL '7 days';",
    "The quarterly board meeting has been postponed until further notice.",
]


def calibration_sentences() -> list[str]:
    """A separate, smaller set for quantization calibration (never used for evaluation)."""
    return list(_CALIBRATION)
