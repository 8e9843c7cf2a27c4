#!/usr/bin/env python3
"""make_demo_data.py - generates demo_requests.jsonl, the replayed request stream
of tools/demo.c (semcache-demo).

What: 60 topics of everyday and technical questions, each with one original
prompt, 2-4 reworded paraphrases and one short answer.  tenant-a asks about
every topic; tenant-b asks about every third topic with exactly the same
prompt strings, so the demo can show that an answer cached for one namespace
never reaches another.  Every prompt appears at least once, most several
times (exact repeats), and the whole stream is shuffled.

How: everything comes from a fixed random seed, so re-running the script
writes a byte-identical file.  Run it from anywhere:
    python3 data/make_demo_data.py            # writes data/demo_requests.jsonl

Why: the demo needs a stream whose right answer is known for every request.
Each line carries its topic id, and a semantic hit whose cached answer has
another topic (or another namespace) is counted as a wrong hit.
"""
import json
import os
import random

SEED = 20240611
MODEL = "demo-model"

# (prompts: original first, then paraphrases; response)
TOPICS = [
    (["What is the capital of Australia?",
      "Which city is the capital of Australia?",
      "Tell me the capital city of Australia.",
      "Australia's capital city is which one?"],
     "The capital of Australia is Canberra, not Sydney or Melbourne."),
    (["How long should I boil an egg for a soft yolk?",
      "How many minutes do I boil an egg to keep the yolk soft?",
      "Boiling an egg with a soft runny yolk: how long?"],
     "About 6 to 7 minutes in gently boiling water, then cool it in cold water."),
    (["How do I reverse a linked list in C?",
      "What's the way to reverse a singly linked list in C?",
      "Write C code that reverses a linked list.",
      "Reverse a linked list in C, how?"],
     "Walk the list keeping prev, cur and next pointers: set cur->next = prev, "
     "advance all three, and return prev as the new head."),
    (["What is the difference between TCP and UDP?",
      "How does TCP differ from UDP?",
      "TCP vs UDP: what are the differences?"],
     "TCP is connection-oriented, ordered and reliable with retransmission; UDP "
     "sends independent datagrams with no delivery or ordering guarantee."),
    (["How do I convert Celsius to Fahrenheit?",
      "What is the formula to convert Celsius into Fahrenheit?",
      "Celsius to Fahrenheit conversion formula?"],
     "Multiply by 9/5 and add 32: F = C * 9/5 + 32."),
    (["What causes the seasons on Earth?",
      "Why does the Earth have seasons?",
      "What is the reason Earth has seasons?"],
     "The tilt of Earth's axis (about 23.4 degrees) changes how directly "
     "sunlight hits each hemisphere over the year."),
    (["How do I undo the last git commit?",
      "How can I revert my most recent git commit?",
      "Undo last commit in git, keeping my changes?",
      "What command undoes the last commit in git?"],
     "Use git reset --soft HEAD~1 to undo the commit but keep the changes "
     "staged; use git revert HEAD if it was already pushed."),
    (["Why is the sky blue?",
      "What makes the sky look blue?",
      "Why does the sky appear blue during the day?"],
     "Air molecules scatter short blue wavelengths of sunlight much more than "
     "red ones (Rayleigh scattering)."),
    (["How many hours of sleep does an adult need?",
      "How much sleep do adults need each night?",
      "What is the recommended amount of sleep for an adult?"],
     "Most adults need 7 to 9 hours of sleep per night."),
    (["What is a prime number?",
      "Can you define a prime number?",
      "Explain what makes a number prime."],
     "A whole number greater than 1 whose only divisors are 1 and itself, "
     "like 2, 3, 5, 7 and 11."),
    (["How do I center a div in CSS?",
      "What's the easiest way to center a div with CSS?",
      "Center a div horizontally and vertically in CSS?",
      "CSS: how to center a div inside its parent?"],
     "Make the parent display: flex with justify-content: center and "
     "align-items: center."),
    (["What is photosynthesis?",
      "Can you explain photosynthesis simply?",
      "How does photosynthesis work in plants?"],
     "Plants use sunlight, water and carbon dioxide to make glucose, "
     "releasing oxygen as a by-product."),
    (["How do vaccines work?",
      "How does a vaccine protect you?",
      "Explain how vaccines work in the body."],
     "They show the immune system a harmless piece or version of a pathogen "
     "so it builds antibodies and memory cells in advance."),
    (["What is the difference between a list and a tuple in Python?",
      "Python: list vs tuple, what is the difference?",
      "How is a tuple different from a list in Python?"],
     "Lists are mutable and tuples are immutable; tuples can be dictionary "
     "keys and are slightly lighter."),
    (["How do I remove a red wine stain from a carpet?",
      "What gets a red wine stain out of carpet?",
      "Red wine spilled on my carpet, how do I remove the stain?"],
     "Blot, don't rub; cover with salt or baking soda, then dab with cold "
     "water and a little dish soap or hydrogen peroxide."),
    (["How far is the Moon from the Earth?",
      "What is the distance from Earth to the Moon?",
      "How many kilometers away is the Moon from Earth?"],
     "On average about 384,400 km (238,900 miles)."),
    (["How do I make a sourdough starter?",
      "What are the steps to make a sourdough starter from scratch?",
      "Making sourdough starter at home, how?"],
     "Mix equal weights of flour and water, keep it warm, discard half and "
     "feed it daily; it is ready in 5 to 10 days when it doubles reliably."),
    (["What is compound interest?",
      "Can you explain compound interest?",
      "How does compound interest work?"],
     "Interest earned on both the principal and the interest already added, "
     "so growth accelerates: A = P(1 + r/n)^(nt)."),
    (["How do I tie a bowline knot?",
      "What are the steps for tying a bowline knot?",
      "Teach me to tie a bowline."],
     "Make a small loop, pass the end up through it, around the standing "
     "part, and back down the loop: the rabbit comes out of the hole, "
     "round the tree, and back down."),
    (["How do I find files larger than 100MB in Linux?",
      "Linux command to find files bigger than 100MB?",
      "How can I list files over 100MB on Linux?"],
     "find / -type f -size +100M 2>/dev/null, optionally piped to ls -lh or du -h."),
    (["What does HTTP 404 mean?",
      "What is an HTTP 404 error?",
      "Meaning of the HTTP status code 404?"],
     "404 Not Found: the server is reachable but has nothing at the "
     "requested URL."),
    (["How often should I water a cactus?",
      "How frequently does a cactus need watering?",
      "Watering a cactus: how often?"],
     "Every 2 to 4 weeks in the growing season, only when the soil is fully "
     "dry; much less in winter."),
    (["What is the speed of light?",
      "How fast does light travel?",
      "What's the speed of light in a vacuum?"],
     "About 299,792 km per second in a vacuum."),
    (["How do I write a good cover letter?",
      "Tips for writing a strong cover letter?",
      "What makes a cover letter good?",
      "How should I write my cover letter for a job application?"],
     "Keep it to one page, tailor it to the job, lead with why you fit, give "
     "one or two concrete achievements and end with a clear call to action."),
    (["What is the difference between affect and effect?",
      "Affect vs effect: which one is which?",
      "When do I use affect and when effect?"],
     "Affect is usually the verb (to influence); effect is usually the noun "
     "(the result)."),
    (["How do I factory reset my Wi-Fi router?",
      "How can I reset my wifi router to factory settings?",
      "Factory reset a wireless router, how?"],
     "Hold the recessed reset button for 10 to 30 seconds with the router on "
     "until the lights flash, then set it up again."),
    (["Who painted the Mona Lisa?",
      "Which artist painted the Mona Lisa?",
      "The Mona Lisa was painted by whom?"],
     "Leonardo da Vinci, in the early 1500s."),
    (["How do I calculate the area of a circle?",
      "What is the formula for the area of a circle?",
      "Area of a circle, how to calculate it?"],
     "Area = pi * r^2, where r is the radius."),
    (["What is the difference between an inner join and a left join in SQL?",
      "SQL inner join vs left join?",
      "How does a left join differ from an inner join in SQL?"],
     "An inner join keeps only rows with a match in both tables; a left join "
     "keeps every row of the left table and fills NULLs where there is no match."),
    (["How many continents are there?",
      "What is the number of continents on Earth?",
      "How many continents does the world have?"],
     "Seven by the most common convention: Africa, Antarctica, Asia, "
     "Australia, Europe, North America and South America."),
    (["Why do cats purr?",
      "What makes a cat purr?",
      "For what reasons do cats purr?"],
     "Mostly contentment, but also to self-soothe when stressed or in pain; "
     "the sound comes from rapid twitching of the larynx muscles."),
    (["How do I get rid of hiccups?",
      "What is a quick way to stop hiccups?",
      "How can I stop the hiccups fast?"],
     "Hold your breath briefly, sip cold water slowly or swallow a teaspoon "
     "of sugar; most bouts stop on their own within minutes."),
    (["What is inflation in economics?",
      "Can you explain inflation in economics?",
      "What does economic inflation mean?"],
     "A general rise in prices over time, which lowers the purchasing power "
     "of money."),
    (["How do I change a flat tire?",
      "What are the steps to change a flat tyre on a car?",
      "Changing a flat tire on my car, how?"],
     "Loosen the lug nuts, jack the car up, remove the wheel, fit the spare, "
     "hand-tighten, lower the car and tighten the nuts in a star pattern."),
    (["How does a refrigerator keep food cold?",
      "How does a fridge work to keep things cold?",
      "What makes a refrigerator cold inside?"],
     "A compressor circulates refrigerant that evaporates inside (absorbing "
     "heat) and condenses outside (releasing it)."),
    (["What is the Pythagorean theorem?",
      "Can you explain the Pythagorean theorem?",
      "State the Pythagorean theorem."],
     "In a right triangle, a^2 + b^2 = c^2, where c is the hypotenuse."),
    (["How do I find which process is using port 8080?",
      "Which process is listening on port 8080, how do I check?",
      "Find the process that uses port 8080 on Linux?"],
     "Run ss -ltnp 'sport = :8080' or lsof -i :8080 to see the pid."),
    (["What is a good stretch for lower back pain?",
      "Which stretches help lower back pain?",
      "Stretches to relieve pain in the lower back?"],
     "Knee-to-chest, child's pose and cat-cow, held gently for 20 to 30 "
     "seconds; see a doctor if pain persists."),
    (["How do I convert a string to an integer in Java?",
      "Java: convert a String into an int?",
      "What's the way to parse a string as an integer in Java?"],
     "Integer.parseInt(s) returns an int; Integer.valueOf(s) returns an "
     "Integer; both throw NumberFormatException on bad input."),
    (["What is the fastest way to learn touch typing?",
      "How can I learn touch typing quickly?",
      "Best way to learn to touch type fast?"],
     "Practise 15 to 20 minutes daily with a typing tutor, never look at the "
     "keys, and go for accuracy before speed."),
    (["What is the tallest mountain in the world?",
      "Which mountain is the tallest on Earth?",
      "Name the world's tallest mountain."],
     "Mount Everest, 8,849 m above sea level."),
    (["What is a black hole?",
      "Can you explain what a black hole is?",
      "How would you describe a black hole?"],
     "A region where gravity is so strong that nothing, not even light, can "
     "escape once it crosses the event horizon."),
    (["How do I make cold brew coffee?",
      "What's the recipe for cold brew coffee?",
      "Making cold brew coffee at home, how?"],
     "Steep coarse ground coffee in cold water (about 1:8) for 12 to 18 "
     "hours in the fridge, then strain."),
    (["What is the difference between RAM and storage?",
      "RAM vs storage: how are they different?",
      "How does RAM differ from disk storage?"],
     "RAM is fast, temporary working memory cleared at power-off; storage "
     "(SSD or HDD) is slower but keeps data permanently."),
    (["How do I politely decline a meeting invitation?",
      "What is a polite way to decline a meeting invite?",
      "Politely declining an invitation to a meeting, how?"],
     "Thank them, say briefly that you can't attend, and offer an "
     "alternative: a later slot, a delegate or async notes."),
    (["What does DNS do?",
      "What is DNS used for?",
      "Explain what the DNS does on the internet."],
     "DNS translates domain names like example.com into IP addresses that "
     "computers use to connect."),
    (["How do I keep a basil plant alive indoors?",
      "How can I keep indoor basil from dying?",
      "Tips for keeping a basil plant alive inside?"],
     "Give it 6+ hours of sun, water when the top soil is dry, and pinch off "
     "the tops and flowers so it stays bushy."),
    (["What is a haiku?",
      "Can you explain what a haiku poem is?",
      "Define a haiku."],
     "A short Japanese poem of three lines with 5, 7 and 5 syllables, often "
     "about nature or a season."),
    (["How do I compute the median of a list of numbers?",
      "What's the way to calculate the median of a list?",
      "Median of a list of numbers, how to compute?"],
     "Sort the list; take the middle element, or the mean of the two middle "
     "elements when the count is even."),
    (["Why do leaves change color in autumn?",
      "Why do tree leaves turn colors in the fall?",
      "What makes autumn leaves change color?"],
     "Trees stop making chlorophyll as days shorten, revealing yellow and "
     "orange pigments; red comes from anthocyanins made in autumn."),
    (["What is a mutex?",
      "Can you explain what a mutex is in programming?",
      "What does a mutex do in concurrent code?"],
     "A mutual-exclusion lock: only one thread may hold it at a time, so "
     "code between lock and unlock never runs concurrently."),
    (["How do I clean a cast iron pan?",
      "What's the right way to clean a cast iron skillet?",
      "Cleaning a cast iron pan without ruining it?"],
     "Rinse with hot water and scrub (a little soap is fine), dry it "
     "completely on the stove and wipe on a thin layer of oil."),
    (["Who wrote Pride and Prejudice?",
      "Which author wrote Pride and Prejudice?",
      "Pride and Prejudice was written by whom?"],
     "Jane Austen, published in 1813."),
    (["How many bones are in the human body?",
      "How many bones does an adult human have?",
      "What is the number of bones in the human body?"],
     "An adult has 206 bones; babies are born with around 270 that fuse."),
    (["How do you say thank you in Japanese?",
      "What is thank you in Japanese?",
      "Japanese word for thank you?"],
     "Arigatou (arigatou gozaimasu to be more polite)."),
    (["What is the difference between weather and climate?",
      "Weather vs climate: what is the difference?",
      "How is climate different from weather?"],
     "Weather is the short-term state of the atmosphere; climate is the "
     "average pattern over decades."),
    (["How do I set up SSH keys?",
      "How can I create and use SSH keys for login?",
      "Setting up SSH key authentication, how?",
      "What are the steps to generate SSH keys?"],
     "Run ssh-keygen -t ed25519, then ssh-copy-id user@host to install the "
     "public key; keep the private key secret."),
    (["What is overfitting in machine learning?",
      "Can you explain overfitting in machine learning?",
      "What does it mean when a machine learning model is overfitting?"],
     "The model learns noise in the training data, so it scores well on "
     "training data but poorly on new data."),
    (["How do I fold a fitted sheet?",
      "What's the trick to folding a fitted sheet?",
      "Folding a fitted sheet neatly, how?"],
     "Tuck the corners into each other in pairs, lay it flat, fold the "
     "elastic edges in to form a rectangle, then fold it up."),
    (["What is the chemical formula of table salt?",
      "What's the formula for table salt in chemistry?",
      "Table salt chemical formula?"],
     "NaCl, sodium chloride."),
]

TENANT_B_EVERY = 3  # tenant-b asks about topics 0, 3, 6, ...


def tokens(text):
    """Rough token count, about 4/3 tokens per word."""
    return max(1, round(len(text.split()) * 4 / 3))


def main():
    rng = random.Random(SEED)
    lines = []
    for topic, (prompts, response) in enumerate(TOPICS):
        latency = rng.randrange(300, 2600, 10)
        namespaces = ["tenant-a"]
        if topic % TENANT_B_EVERY == 0:
            namespaces.append("tenant-b")
        for ns in namespaces:
            for i, prompt in enumerate(prompts):
                # Originals are asked most; paraphrases less often.
                repeats = rng.randint(3, 6) if i == 0 else rng.randint(1, 4)
                for _ in range(repeats):
                    lines.append({
                        "ns": ns,
                        "topic": topic,
                        "prompt": prompt,
                        "response": response,
                        "model": MODEL,
                        "latency_ms": latency,
                        "prompt_tokens": tokens(prompt),
                        "completion_tokens": tokens(response),
                    })
    rng.shuffle(lines)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_requests.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for rec in lines:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"{out}: {len(lines)} requests, {len(TOPICS)} topics")


if __name__ == "__main__":
    main()
