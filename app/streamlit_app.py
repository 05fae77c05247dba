"""attnsim design-space explorer. Run: streamlit run app/streamlit_app.py"""
from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="attnsim explorer", layout="wide")
pages = [
    st.Page(str(HERE / "app_pages/explore.py"), title="Explore", default=True),
    st.Page(str(HERE / "app_pages/compare.py"), title="Compare"),
    st.Page(str(HERE / "app_pages/sweep.py"), title="Sweep"),
    st.Page(str(HERE / "app_pages/validate.py"), title="Validate"),
]
st.navigation(pages).run()
